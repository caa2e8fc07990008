"""DP-SGD, the empirical epsilon and the label-only attack (labkit.privacy, labkit.dp): checked
against Opacus, scipy and closed forms."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from labkit import dp, privacy
from labkit.ensemble import BatchedMLP
from labkit.models import MLP


def _batch(n=32, d=20, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g) < 0.3).float(), torch.randint(0, c, (n,), generator=g)


def _opacus_step(model, x, y, *, lr, max_grad_norm, expected_batch_size):
    """One step of Opacus's DPOptimizer (SGD, noise off) on a copy of ``model``."""
    m = copy.deepcopy(model)
    gs = GradSampleModule(m)
    opt = DPOptimizer(torch.optim.SGD(gs.parameters(), lr=lr), noise_multiplier=0.0, max_grad_norm=max_grad_norm,
                      expected_batch_size=expected_batch_size)
    opt.zero_grad()
    F.cross_entropy(gs(x), y).backward()
    opt.step()
    return m


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("max_grad_norm", [0.1, 1.0, 100.0])
def test_dp_sgd_step_equals_opacus_without_noise(max_grad_norm):
    x, y = _batch()
    model = MLP(20, 5, hidden=(16,), seed=1)
    ours = copy.deepcopy(model)
    step = privacy.dp_sgd_step(ours, x, y, lr=0.5, max_grad_norm=max_grad_norm, noise_multiplier=0.0, expected_batch_size=30)
    theirs = _opacus_step(model, x, y, lr=0.5, max_grad_norm=max_grad_norm, expected_batch_size=30)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert step.per_example_norms.shape == (32,)
    # a changed step (no clipping when it should clip) would not match: the test can fail
    if max_grad_norm < 1:
        plain = copy.deepcopy(model)
        privacy.dp_sgd_step(plain, x, y, lr=0.5, max_grad_norm=1e9, noise_multiplier=0.0, expected_batch_size=30)
        assert max((a - b).abs().max() for a, b in zip(plain.parameters(), theirs.parameters())) > 1e-3


def test_dp_sgd_step_norms_are_the_per_example_gradient_norms():
    x, y = _batch(n=4)
    model = MLP(20, 5, hidden=(8,), seed=2)
    step = privacy.dp_sgd_step(copy.deepcopy(model), x, y, lr=0.0, max_grad_norm=1.0, noise_multiplier=0.0)
    for i in range(4):  # a second way: autograd on one example at a time
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        norm = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()
        assert abs(float(norm) - float(step.per_example_norms[i])) < 1e-5


def test_clipping_bounds_each_examples_influence():
    x, y = _batch(n=1)
    model = MLP(20, 5, hidden=(8,), seed=3)
    with torch.no_grad():
        model.net[-1].weight.mul_(50)  # a large loss: a gradient far above C
    step = privacy.dp_sgd_step(copy.deepcopy(model), x, y, lr=1.0, max_grad_norm=0.25, noise_multiplier=0.0)
    assert step.per_example_norms[0] > 1
    total = torch.cat([g.flatten() for g in step.grads]).norm()
    assert total <= 0.25 + 1e-5 and total > 0.24


def test_dp_sgd_noise_has_standard_deviation_sigma_c_over_b_and_follows_the_seed():
    x, y = _batch(n=16)
    model = MLP(20, 5, hidden=(64,), seed=4)
    clean = privacy.dp_sgd_step(copy.deepcopy(model), x, y, lr=0.0, max_grad_norm=2.0, noise_multiplier=0.0)
    noisy = privacy.dp_sgd_step(copy.deepcopy(model), x, y, lr=0.0, max_grad_norm=2.0, noise_multiplier=3.0, seed=7)
    again = privacy.dp_sgd_step(copy.deepcopy(model), x, y, lr=0.0, max_grad_norm=2.0, noise_multiplier=3.0, seed=7)
    noise = torch.cat([(a - b).flatten() for a, b in zip(noisy.grads, clean.grads)])
    assert abs(float(noise.std()) - 3.0 * 2.0 / 16) < 0.02 * 3.0 * 2.0 / 16 * 5
    assert all(torch.equal(a, b) for a, b in zip(noisy.grads, again.grads))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_batched_clipped_gradients_equal_opacus_per_member_with_padding():
    members = [MLP(20, 5, hidden=(16,), seed=s) for s in (5, 6)]
    ens = BatchedMLP.from_models(members)
    x0, y0 = _batch(n=24, seed=1)
    x1, y1 = _batch(n=24, seed=2)
    valid = torch.ones(2, 24, dtype=torch.bool)
    valid[1, 17:] = False  # member 1 sampled only 17 records; the rest is padding
    norms, _ = dp.dp_clipped_grads_batched(ens, torch.stack([x0, x1]), torch.stack([y0, y1]), valid, max_grad_norm=0.5)
    assert (norms[1, 17:] == 0).all()
    for i, (m, x, y) in enumerate(((members[0], x0, y0), (members[1], x1[:17], y1[:17]))):
        after = _opacus_step(m, x, y, lr=1.0, max_grad_norm=0.5, expected_batch_size=1)  # update = summed clipped grads
        lins = [mod for mod in m.net if isinstance(mod, torch.nn.Linear)]
        lins_after = [mod for mod in after.net if isinstance(mod, torch.nn.Linear)]
        for layer, (a, b) in enumerate(zip(lins, lins_after)):
            assert torch.allclose(ens.weights[layer].grad[i], (a.weight - b.weight).T, atol=1e-5)
            assert torch.allclose(ens.biases[layer].grad[i], a.bias - b.bias, atol=1e-5)


def test_fit_batched_dp_spends_its_epsilon_and_follows_its_seed():
    x, y = _batch(n=200, c=4)
    runs = []
    for seed in (0, 0, 1):
        ens = BatchedMLP(2, 20, 4, hidden=(8,), seed=0)
        rep = dp.fit_batched_dp(ens, x, y, epsilon=2.0, epochs=3, batch_size=50, lr=0.5, optimizer="sgd", seed=seed)
        runs.append((ens.weights[0].detach().clone(), rep))
    assert torch.equal(runs[0][0], runs[1][0]) and not torch.equal(runs[0][0], runs[2][0])
    rep = runs[0][1]
    assert rep.steps == 12 and rep.sample_rate == 0.25 and rep.delta == 1 / 200
    assert 1.9 < rep.epsilon <= 2.0 and rep.noise_multiplier > 0
    assert math.isclose(dp.epsilon_spent(rep.noise_multiplier, sample_rate=0.25, steps=12, delta=1 / 200), rep.epsilon)
    # more noise, less epsilon: the accountant is monotone
    assert dp.epsilon_spent(2 * rep.noise_multiplier, sample_rate=0.25, steps=12, delta=1 / 200) < rep.epsilon


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_train_dp_opacus_reaches_its_target_epsilon_without_touching_global_state():
    x, y = _batch(n=256, c=4)
    state = torch.get_rng_state()
    run = privacy.train_dp_opacus(MLP(20, 4, hidden=(8,), seed=0), x, y, epsilon=3.0, epochs=2, batch_size=64, lr=0.1, optimizer="sgd")
    assert torch.equal(state, torch.get_rng_state())
    assert isinstance(run.model, MLP) and 2.8 < run.epsilon <= 3.0 + 1e-6
    # Opacus chose the same sigma as labkit's accountant for the same (q, steps)
    assert abs(run.noise_multiplier - dp.noise_multiplier_for(3.0, delta=1 / 256, sample_rate=run.sample_rate, steps=8)) < 1e-9


def test_clopper_pearson_against_scipy_and_closed_forms():
    from scipy.stats import beta

    k = torch.tensor([0, 1, 5, 50, 99, 100])
    b = privacy.clopper_pearson(k, 100, confidence=0.9)
    for i, kk in enumerate(k.tolist()):
        lo = 0.0 if kk == 0 else beta.ppf(0.1, kk, 100 - kk + 1)
        hi = 1.0 if kk == 100 else beta.ppf(0.9, kk + 1, 100 - kk)
        assert abs(float(b.lower[i]) - lo) < 1e-10 and abs(float(b.upper[i]) - hi) < 1e-10
    assert abs(float(b.upper[0]) - (1 - 0.1 ** (1 / 100))) < 1e-12
    assert abs(float(b.lower[-1]) - 0.1 ** (1 / 100)) < 1e-12


def test_empirical_epsilon_of_a_perfect_attack_is_the_hand_computed_bound():
    n, delta, conf = 1000, 1e-3, 0.95
    scores = torch.cat([torch.ones(n), torch.zeros(n)])
    truth = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    a = (1 - conf) / 2  # each of the two one-sided bounds holds at level 1 - a
    tpr_lo, fpr_hi = a ** (1 / n), 1 - a ** (1 / n)
    want = math.log((tpr_lo - delta) / fpr_hi)
    got = privacy.empirical_epsilon(scores, truth, delta=delta, confidence=conf)
    assert abs(got.epsilon - want) < 1e-9 and got.tpr == 1.0 and got.fpr == 0.0
    assert got.n_members == n and got.n_nonmembers == n
    # the other direction: every member above the threshold (FNR = 0), half the non-members below
    from scipy.stats import beta

    half = torch.cat([torch.ones(n), (torch.arange(n) % 2).float()])
    other = privacy.empirical_epsilon(half, truth, delta=delta, confidence=conf)
    tnr_lo, fnr_hi = beta.ppf(a, n // 2, n - n // 2 + 1), 1 - a ** (1 / n)
    assert other.direction == "tnr" and abs(other.epsilon - math.log((tnr_lo - delta) / fnr_hi)) < 1e-7
    # a coin-flip attack gives (almost) no evidence
    g = torch.Generator().manual_seed(0)
    noise = privacy.empirical_epsilon(torch.rand(2 * n, generator=g), truth, delta=delta, confidence=conf)
    assert noise.epsilon < 0.3


def test_empirical_epsilon_stays_below_the_accountants_on_a_real_private_run():
    x, y = _batch(n=2000, d=30, c=4, seed=3)
    eps = 1.0
    ens = BatchedMLP(1, 30, 4, hidden=(32,), seed=0)
    half = torch.arange(2000) < 1000
    rep = dp.fit_batched_dp(ens, x[half], y[half], epsilon=eps, epochs=20, batch_size=100, lr=1.0, optimizer="sgd", seed=0)
    with torch.no_grad():
        loss = F.cross_entropy(ens(x)[0], y, reduction="none")
    bound = privacy.empirical_epsilon(-loss, half, delta=rep.delta, confidence=0.95)
    assert 0 <= bound.epsilon <= rep.epsilon <= eps


class _Recorder:
    """A label-only oracle that keeps every query (the true label when the record is unchanged)."""

    def __init__(self, model):
        self.model, self.seen = model, []

    def __call__(self, q):
        self.seen.append(q.clone())
        with torch.no_grad():
            return self.model(q).argmax(1)


def test_label_only_queries_flip_exactly_r_features_and_are_counted():
    x, y = _batch(n=30, d=40, c=3)
    rec = _Recorder(MLP(40, 3, hidden=(8,), seed=0))
    out = privacy.label_only_scores(rec, x, y, r=5, n_copies=7, batch_size=64, seed=1)
    q = torch.cat(rec.seen)
    assert out.queries == 30 * 8 == q.shape[0]
    dist = (q.view(30, 8, 40) - x[:, None]).abs().sum(2)  # Hamming distance of each query to its record
    assert (dist[:, 0] == 0).all() and (dist[:, 1:] == 5).all()
    assert ((out.scores * 8).round() == out.scores * 8).all() and (0 <= out.scores).all() and (out.scores <= 1).all()
    again = privacy.label_only_scores(_Recorder(rec.model), x, y, r=5, n_copies=7, batch_size=64, seed=1)
    assert torch.equal(out.scores, again.scores)


def test_label_only_without_copies_is_the_gap_attack():
    x, y = _batch(n=50, d=40, c=3)
    model = MLP(40, 3, hidden=(8,), seed=0)
    out = privacy.label_only_scores(_Recorder(model), x, y, r=3, n_copies=0)
    assert torch.equal(out.scores, (model(x).argmax(1) == y).double()) and out.queries == 50
    with pytest.raises(ValueError):
        privacy.label_only_scores(_Recorder(model), x * 2, y, r=1, n_copies=1)
