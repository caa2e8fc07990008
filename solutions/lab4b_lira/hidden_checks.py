"""Hidden checks of Lab 4b (LiRA), run by the grader outside the student's kernel (coursetools/checks.py).

Each check builds its inputs here, calls the student's function in the sandboxed kernel with
``kernel.call``, and compares the data that comes back with labkit's reference, computed here.
The random cases are the ones the lab's former in-notebook hidden tests drew (same seeds, same
order); the notebook's own state (the targets' outputs ``target_probs`` and the shadows' ``phi_all``)
is fetched with ``kernel.value`` as one case more, and a realistic case built here stands beside it:
float32 softmax outputs of an overfit 100-class model (some true-class probabilities round to 1.0,
some to 0.0), and shadow-model phi on complementary random halves. The pool's labels and the
membership masks are rebuilt here from the lab's seeds, never taken from the kernel.
"""
import functools
import math

import torch

from coursetools.checks import StudentError, check
from labkit import metrics
from labkit.membership import lira
from labkit.utils import make_generator

K, T = 20, 4               # the notebook's models: 20 in all, targets 0..3, shadows 4..19
FPRS = (0.0, 0.001, 0.01, 0.1, 0.5, 1.0)


# ------------------------------------------------------------------------------------ inputs
@functools.lru_cache(maxsize=1)
def _pool_labels() -> torch.Tensor:
    """``pool.y`` of the notebook, rebuilt from the lab's seeds (the same data, the same order)."""
    from labkit.targets import purchase_target_setting

    target_setting = purchase_target_setting()
    records = target_setting.data()
    shuffled = torch.randperm(len(records), generator=make_generator(0))
    return records.y[shuffled[: 2 * target_setting.n_train]].clone()


@functools.lru_cache(maxsize=1)
def _in_mask() -> torch.Tensor:
    """``in_mask`` of the notebook (K models on random halves of the pool), rebuilt."""
    return lira.random_halves(len(_pool_labels()), K, seed=1)


def _notebook_value(kernel, name: str):
    """A global of the student's notebook, as data (a value the provided cells compute)."""
    try:
        return kernel.value(name)
    except StudentError:
        raise AssertionError(f"your notebook has no {name} (the provided cells define it): run them as they are") from None


def _notebook_target_probs(kernel) -> list:
    """The notebook's ``target_probs`` (T float tensors (n, C) of probabilities), checked to be that."""
    n = len(_pool_labels())
    got = _notebook_value(kernel, "target_probs")
    ok = isinstance(got, (list, tuple)) and len(got) == T and all(
        type(p) is torch.Tensor and p.is_floating_point() and tuple(p.shape) == (n, 100)
        and bool(torch.isfinite(p).all()) and bool((p >= 0).all()) and bool((p <= 1).all()) for p in got)
    assert ok, ("your notebook's target_probs is not what the provided cells build (a list of the four "
                "targets' probability vectors on the pool): run the provided cells as they are")
    return list(got)


def _notebook_phi_all(kernel) -> torch.Tensor:
    """The notebook's ``phi_all`` (K, n), checked for its shape and finiteness."""
    got = _notebook_value(kernel, "phi_all")
    ok = type(got) is torch.Tensor and got.is_floating_point() and tuple(got.shape) == (K, len(_pool_labels())) \
        and bool(torch.isfinite(got).all())
    assert ok, ("your notebook's phi_all is not what the provided cells build (phi of the 20 models on the "
                "pool, finite): run the provided cells as they are")
    return got.double()


def _oracle_like_probs(seed: int, n: int = 2000, c: int = 100):
    """Float32 softmax outputs of an overfit c-class model on n records, with labels: most true-class
    logits lead by a margin (some past float32's saturation, so p_y rounds to 1.0), some records are
    mistakes, and a few are extreme (p_y rounds to 0.0, or every other class underflows)."""
    gen = make_generator(seed)
    y = torch.randint(0, c, (n,), generator=gen)
    logits = torch.randn(n, c, generator=gen) * 2.0
    margin = torch.rand(n, generator=gen) * 30.0 - 5.0          # -5 .. 25: many rows saturate in float32
    margin[:8] = torch.tensor([-120.0, -150.0, -60.0, 40.0, 60.0, 120.0, 150.0, 17.0])
    logits[torch.arange(n), y] += margin
    probs = torch.softmax(logits, dim=1)                          # float32, as the oracle answers
    p_y = probs[torch.arange(n), y]
    assert (p_y == 1.0).sum() > 20 and (p_y == 0.0).any() and (p_y < 0.5).sum() > 20, "the checker's case is broken"
    return probs, y


def _shadow_case(seed: int, k: int = 16, n: int = 4000):
    """Shadow phi (k, n) on complementary random halves, as the notebook's shadows give them, and a
    target's phi (n,) with its truth: per-record "in" and "out" Gaussians of varied means and spreads,
    a few targets far in the tails."""
    gen = make_generator(seed)
    mask = lira.random_halves(n, k, seed=seed)
    mu_out = torch.randn(n, generator=gen, dtype=torch.float64) * 2.0
    mu_in = mu_out + torch.rand(n, generator=gen, dtype=torch.float64) * 6.0
    s_in = torch.rand(n, generator=gen, dtype=torch.float64) * 1.5 + 0.2
    s_out = torch.rand(n, generator=gen, dtype=torch.float64) * 1.5 + 0.2
    noise = torch.randn(k, n, generator=gen, dtype=torch.float64)
    phi = torch.where(mask, mu_in + s_in * noise, mu_out + s_out * noise)
    member = torch.rand(n, generator=gen) < 0.5
    phi_t = torch.where(member, mu_in, mu_out) + torch.where(member, s_in, s_out) * torch.randn(n, generator=gen, dtype=torch.float64)
    phi_t[:4] = torch.tensor([45.0, 60.0, -40.0, 90.0], dtype=torch.float64)
    return phi, mask, phi_t, member


# ------------------------------------------------------------------------------------ comparing
def _tensor(got, what: str, n: int):
    assert type(got) is torch.Tensor, f"{what}: returned a {type(got).__name__}, expected a torch tensor"
    assert tuple(got.shape) == (n,), f"{what}: returned shape {tuple(got.shape)}, expected one value per record"
    assert got.is_floating_point(), f"{what}: returned dtype {got.dtype}, expected float64"
    return got.double()


def _close(got, want, what: str, *, atol: float, rtol: float = 1e-5, finite: bool = False):
    got = _tensor(got, what, want.shape[0])
    if finite:
        assert torch.isfinite(got).all(), f"{what}: some scores are inf or nan"
    assert torch.allclose(got, want, atol=atol, rtol=rtol, equal_nan=False), f"{what}: wrong values"


def _gaussians_close(got, want, what: str):
    for field in ("mu_in", "sigma_in", "mu_out", "sigma_out"):
        assert hasattr(got, field), f"{what}: the result has no field {field} (return a lira.LiraGaussians)"
        _close(getattr(got, field), getattr(want, field), f"{what}, {field}", atol=1e-9)
    for field in ("n_in", "n_out"):
        assert hasattr(got, field), f"{what}: the result has no field {field} (return a lira.LiraGaussians)"
        value = getattr(got, field)
        assert type(value) is torch.Tensor and tuple(value.shape) == tuple(getattr(want, field).shape), \
            f"{what}, {field}: expected an int64 tensor with one count per record"
        assert torch.equal(value.long(), getattr(want, field)), f"{what}, {field}: wrong counts"


# ------------------------------------------------------------------------------------ task (a)
@check("test_loss_score")
def loss_score_on_random_outputs(kernel):
    """loss_score on random probability vectors (2 to 100 classes), against the reference"""
    gen = make_generator(11)
    for n, c in ((200, 10), (50, 100), (7, 2)):
        probs = torch.softmax(3 * torch.randn(n, c, generator=gen), dim=1)
        y = torch.randint(0, c, (n,), generator=gen)
        _close(kernel.call("loss_score", probs, y), lira.loss_score(probs, y),
               f"random outputs with {c} classes", atol=1e-6)


@check("test_loss_score")
def loss_score_on_overfit_outputs(kernel):
    """loss_score on float32 outputs of an overfit model (p_y rounding to 0 or 1)"""
    probs, y = _oracle_like_probs(101)
    _close(kernel.call("loss_score", probs, y), lira.loss_score(probs, y),
           "float32 outputs of an overfit model", atol=1e-6, finite=True)


@check("test_loss_score")
def loss_score_on_your_target(kernel):
    """loss_score on target 0's outputs in your notebook"""
    probs, y = _notebook_target_probs(kernel)[0], _pool_labels()
    _close(kernel.call("loss_score", probs, y), lira.loss_score(probs, y), "target 0's outputs", atol=1e-6)


@check("test_confidence_score")
def confidence_score_on_random_outputs(kernel):
    """confidence_score on random probability vectors, against the reference"""
    gen = make_generator(12)
    for n, c in ((100, 10), (30, 100)):
        probs = torch.softmax(2 * torch.randn(n, c, generator=gen), dim=1)
        _close(kernel.call("confidence_score", probs), lira.confidence_score(probs),
               f"random outputs with {c} classes", atol=1e-7)


@check("test_confidence_score")
def confidence_score_on_overfit_outputs(kernel):
    """confidence_score on float32 outputs of an overfit model"""
    probs, _ = _oracle_like_probs(102)
    _close(kernel.call("confidence_score", probs), lira.confidence_score(probs),
           "float32 outputs of an overfit model", atol=1e-7)


@check("test_confidence_score")
def confidence_score_on_your_target(kernel):
    """confidence_score on target 1's outputs in your notebook"""
    probs = _notebook_target_probs(kernel)[1]
    _close(kernel.call("confidence_score", probs), lira.confidence_score(probs), "target 1's outputs", atol=1e-7)


@check("test_entropy_score")
def entropy_score_on_random_outputs(kernel):
    """entropy_score on random probability vectors (2 to 100 classes), against the reference"""
    gen = make_generator(13)
    for n, c in ((100, 10), (30, 100), (5, 2)):
        probs = torch.softmax(2 * torch.randn(n, c, generator=gen), dim=1)
        _close(kernel.call("entropy_score", probs), lira.entropy_score(probs),
               f"random outputs with {c} classes", atol=1e-7)


@check("test_entropy_score")
def entropy_score_on_overfit_outputs(kernel):
    """entropy_score on float32 outputs of an overfit model (probabilities that round to 0)"""
    probs, _ = _oracle_like_probs(103)
    _close(kernel.call("entropy_score", probs), lira.entropy_score(probs),
           "float32 outputs of an overfit model", atol=1e-7, finite=True)


@check("test_entropy_score")
def entropy_score_on_your_target(kernel):
    """entropy_score on target 2's outputs in your notebook"""
    probs = _notebook_target_probs(kernel)[2]
    _close(kernel.call("entropy_score", probs), lira.entropy_score(probs), "target 2's outputs", atol=1e-7)


# ------------------------------------------------------------------------------------ task (b)
@check("test_logit_scale")
def logit_scale_on_random_outputs(kernel):
    """logit_scale on float64 softmax outputs, up to logits so large that p_y rounds to 1"""
    gen = make_generator(21)
    for n, c, scale in ((200, 10, 3.0), (60, 100, 10.0), (9, 2, 30.0)):
        logits = scale * torch.randn(n, c, generator=gen, dtype=torch.float64)
        probs, y = torch.softmax(logits, dim=1), torch.randint(0, c, (n,), generator=gen)
        _close(kernel.call("logit_scale", probs, y), lira.logit_scale(probs, y),
               f"float64 outputs with {c} classes", atol=1e-6, rtol=1e-9, finite=True)


@check("test_logit_scale")
def logit_scale_on_overfit_outputs(kernel):
    """logit_scale on float32 outputs of an overfit model (p_y rounding to 1 or to 0)"""
    probs, y = _oracle_like_probs(104)
    _close(kernel.call("logit_scale", probs, y), lira.logit_scale(probs, y),
           "float32 outputs of an overfit model", atol=1e-6, rtol=1e-9, finite=True)


@check("test_logit_scale")
def logit_scale_on_your_target(kernel):
    """logit_scale on target 0's float32 outputs in your notebook"""
    probs, y = _notebook_target_probs(kernel)[0], _pool_labels()
    _close(kernel.call("logit_scale", probs, y), lira.logit_scale(probs, y),
           "target 0's outputs", atol=1e-6, rtol=1e-9, finite=True)


# ------------------------------------------------------------------------------------ task (c)
def _random_shadow_cases():
    """The former hidden tests' cases: random phi on random halves (3 sizes), all sigmas floored."""
    gen = make_generator(31)
    cases = []
    for k, n in ((8, 50), (12, 300), (4, 7)):
        mask = lira.random_halves(n + n % 2, k, seed=k)[:, :n]
        cases.append((torch.randn(k, n, generator=gen, dtype=torch.float64) * 2 + 3 * mask, mask))
    zeros = (torch.zeros(4, 6, dtype=torch.float64), lira.random_halves(6, 4, seed=0))
    return cases, zeros


def _uneven_shadow_case(seed: int, k: int = 10, n: int = 300):
    """Shadows that are not on complementary halves: record j is "in" for a random 2..k-2 of them,
    so the records' counts differ (pooling then weighs each record by its degrees of freedom)."""
    gen = make_generator(seed)
    count = torch.randint(2, k - 1, (n,), generator=gen)
    rank = torch.argsort(torch.rand(k, n, generator=gen), dim=0).argsort(dim=0)
    mask = rank < count
    phi = torch.randn(k, n, generator=gen, dtype=torch.float64) * (1 + 2 * torch.rand(n, generator=gen, dtype=torch.float64)) \
        + 4 * mask
    return phi, mask


def _fit_checks(kernel, global_variance: bool):
    cases, zeros = _random_shadow_cases()
    for i, (phi, mask) in enumerate(cases):
        _gaussians_close(kernel.call("fit_lira_gaussians", phi, mask, global_variance=global_variance),
                         lira.fit_lira_gaussians(phi, mask, global_variance=global_variance),
                         f"random shadows, case {i + 1}")
    phi, mask, _, _ = _shadow_case(301)
    _gaussians_close(kernel.call("fit_lira_gaussians", phi, mask, global_variance=global_variance),
                     lira.fit_lira_gaussians(phi, mask, global_variance=global_variance),
                     "16 shadows on 4,000 records")
    phi, mask = _uneven_shadow_case(302)
    _gaussians_close(kernel.call("fit_lira_gaussians", phi, mask, global_variance=global_variance),
                     lira.fit_lira_gaussians(phi, mask, global_variance=global_variance),
                     "records with different numbers of in and out shadows")
    _gaussians_close(kernel.call("fit_lira_gaussians", *zeros, global_variance=global_variance),
                     lira.fit_lira_gaussians(*zeros, global_variance=global_variance),
                     "shadows that agree exactly (every sigma floored at min_sigma)")


@check("test_fit_lira_gaussians")
def fit_per_record(kernel):
    """fit_lira_gaussians per record, on random, uneven and realistic shadow sets, against the reference"""
    _fit_checks(kernel, global_variance=False)


@check("test_fit_lira_gaussians")
def fit_per_record_on_your_shadows(kernel):
    """fit_lira_gaussians per record on your notebook's 16 shadows"""
    phi, mask = _notebook_phi_all(kernel)[T:], _in_mask()[T:]
    _gaussians_close(kernel.call("fit_lira_gaussians", phi, mask, global_variance=False),
                     lira.fit_lira_gaussians(phi, mask, global_variance=False), "your shadows")


@check("test_fit_lira_gaussians_pooled")
def fit_pooled(kernel):
    """fit_lira_gaussians with global_variance=True, on random, uneven and realistic shadow sets"""
    _fit_checks(kernel, global_variance=True)


@check("test_fit_lira_gaussians_pooled")
def fit_pooled_on_your_shadows(kernel):
    """fit_lira_gaussians with global_variance=True on your notebook's 16 shadows"""
    phi, mask = _notebook_phi_all(kernel)[T:], _in_mask()[T:]
    _gaussians_close(kernel.call("fit_lira_gaussians", phi, mask, global_variance=True),
                     lira.fit_lira_gaussians(phi, mask, global_variance=True), "your shadows, global variance")


@check("test_fit_lira_gaussians_pooled")
def fit_min_sigma(kernel):
    """fit_lira_gaussians honours min_sigma"""
    phi, mask = _random_shadow_cases()[0][0]
    got = kernel.call("fit_lira_gaussians", phi, mask, min_sigma=0.5)
    want = lira.fit_lira_gaussians(phi, mask, min_sigma=0.5)
    for field in ("sigma_in", "sigma_out"):
        assert hasattr(got, field), f"the result has no field {field} (return a lira.LiraGaussians)"
        _close(getattr(got, field), getattr(want, field), f"min_sigma=0.5, {field}", atol=1e-8)


# ------------------------------------------------------------------------------------ tasks (d), (e)
def _random_gaussians(gen, n: int, online: bool) -> lira.LiraGaussians:
    """The former hidden tests' random Gaussians (online: seed 41's recipe; offline: seed 51's)."""
    f64 = torch.float64
    if online:
        gaussians = lira.LiraGaussians(
            mu_in=torch.randn(n, generator=gen, dtype=f64) * 3 + 5, sigma_in=torch.rand(n, generator=gen, dtype=f64) + 0.2,
            mu_out=torch.randn(n, generator=gen, dtype=f64) * 3, sigma_out=torch.rand(n, generator=gen, dtype=f64) * 2 + 0.2,
            n_in=torch.full((n,), 5), n_out=torch.full((n,), 5))
    else:
        gaussians = lira.LiraGaussians(
            mu_in=torch.zeros(n, dtype=f64), sigma_in=torch.ones(n, dtype=f64),
            mu_out=torch.randn(n, generator=gen, dtype=f64) * 3, sigma_out=torch.rand(n, generator=gen, dtype=f64) * 2 + 0.1,
            n_in=torch.full((n,), 3), n_out=torch.full((n,), 3))
    return gaussians


def _your_target_case(kernel, target: int):
    """Target ``target``'s phi (from your notebook's outputs) and the Gaussians of the other 19 models."""
    probs, phi_all, mask = _notebook_target_probs(kernel)[target], _notebook_phi_all(kernel), _in_mask()
    others = torch.arange(K) != target
    return lira.logit_scale(probs, _pool_labels()), lira.fit_lira_gaussians(phi_all[others], mask[others])


@check("test_lira_online")
def online_on_random_gaussians(kernel):
    """lira_online on random Gaussians and far-apart phi, against the reference"""
    gen = make_generator(41)
    for n in (50, 400):
        g = _random_gaussians(gen, n, online=True)
        phi = torch.randn(n, generator=gen, dtype=torch.float64) * 6
        _close(kernel.call("lira_online", phi, g), lira.lira_online(phi, g), f"{n} random Gaussians",
               atol=1e-8, rtol=1e-10)


@check("test_lira_online")
def online_on_realistic_shadows(kernel):
    """lira_online with Gaussians fitted to 16 shadows, some targets far in the tails"""
    phi, mask, phi_t, _ = _shadow_case(401)
    g = lira.fit_lira_gaussians(phi, mask)
    _close(kernel.call("lira_online", phi_t, g), lira.lira_online(phi_t, g), "16 shadows",
           atol=1e-8, rtol=1e-10, finite=True)


@check("test_lira_online")
def online_on_your_target(kernel):
    """lira_online on target 0 of your notebook"""
    phi_t, g = _your_target_case(kernel, 0)
    _close(kernel.call("lira_online", phi_t, g), lira.lira_online(phi_t, g), "target 0", atol=1e-8, rtol=1e-10)


@check("test_lira_offline")
def offline_on_random_gaussians(kernel):
    """lira_offline on random Gaussians, phi far in the tails, against the reference"""
    gen = make_generator(51)
    for n in (60, 500):
        g = _random_gaussians(gen, n, online=False)
        phi = torch.randn(n, generator=gen, dtype=torch.float64) * 10
        _close(kernel.call("lira_offline", phi, g), lira.lira_offline(phi, g), f"{n} random Gaussians",
               atol=1e-8, rtol=1e-9, finite=True)


@check("test_lira_offline")
def offline_on_realistic_shadows(kernel):
    """lira_offline with Gaussians fitted to 16 shadows, some targets far in the tails"""
    phi, mask, phi_t, _ = _shadow_case(501)
    g = lira.fit_lira_gaussians(phi, mask, global_variance=True)
    _close(kernel.call("lira_offline", phi_t, g), lira.lira_offline(phi_t, g), "16 shadows",
           atol=1e-8, rtol=1e-9, finite=True)


@check("test_lira_offline")
def offline_on_your_target(kernel):
    """lira_offline on target 1 of your notebook"""
    phi_t, g = _your_target_case(kernel, 1)
    _close(kernel.call("lira_offline", phi_t, g), lira.lira_offline(phi_t, g), "target 1",
           atol=1e-8, rtol=1e-9, finite=True)


# ------------------------------------------------------------------------------------ task (f)
def _rates(kernel, cases, what: str):
    for i, (scores, member) in enumerate(cases):
        for fpr in FPRS:
            got = kernel.call("tpr_at_fpr", scores, member, fpr=fpr)
            if type(got) is torch.Tensor and got.numel() == 1:
                got = got.item()
            assert type(got) in (float, int), f"{what}: returned a {type(got).__name__}, expected a float"
            want = metrics.tpr_at_fpr(scores, member, fpr=fpr)
            bound = "no false positive allowed" if fpr == 0 else "any FPR allowed" if fpr == 1 else "a low FPR bound"
            assert math.isfinite(got) and abs(float(got) - want) < 1e-9, f"{what} (case {i + 1}), {bound}: wrong TPR"


def _random_tpr_cases():
    """The former hidden tests' cases: separable-ish random scores of 3 sizes, then rounded (tied) ones."""
    gen = make_generator(61)
    cases = []
    for n in (50, 1000, 5000):
        member = torch.rand(n, generator=gen) < 0.5
        cases.append((torch.randn(n, generator=gen, dtype=torch.float64) + 1.5 * member, member))
    member = torch.rand(800, generator=gen) < 0.3
    cases.append(((torch.randn(800, generator=gen) + member).round(decimals=1), member))  # many ties
    return cases


@check("test_tpr_at_fpr")
def tpr_on_random_scores(kernel):
    """tpr_at_fpr on random scores (50 to 5,000 records) at FPRs from 0 to 1"""
    _rates(kernel, _random_tpr_cases()[:3], "random scores")


@check("test_tpr_at_fpr")
def tpr_with_many_ties(kernel):
    """tpr_at_fpr on scores with many ties"""
    _rates(kernel, _random_tpr_cases()[3:], "tied scores")


@check("test_tpr_at_fpr")
def tpr_on_attack_scores(kernel):
    """tpr_at_fpr on LiRA scores and on an overfit model's confidences (ties at the top)"""
    phi, mask, phi_t, member = _shadow_case(601)
    g = lira.fit_lira_gaussians(phi, mask)
    probs, _ = _oracle_like_probs(602)
    conf = probs.max(dim=1).values                                      # float32, many exactly 1.0
    in_conf = torch.rand(len(conf), generator=make_generator(603)) < 0.3 + 0.5 * conf
    assert (conf == 1.0).sum() > 20 and in_conf[conf == 1.0].any() and (~in_conf[conf == 1.0]).any(), "the checker's case is broken"
    _rates(kernel, [(lira.lira_online(phi_t, g), member), (lira.lira_offline(phi_t, g), member), (conf, in_conf)],
           "attack scores")


@check("test_tpr_at_fpr")
def tpr_on_your_target(kernel):
    """tpr_at_fpr on online LiRA's scores of target 0 of your notebook"""
    phi_t, g = _your_target_case(kernel, 0)
    _rates(kernel, [(lira.lira_online(phi_t, g), _in_mask()[0])], "target 0's LiRA scores")
