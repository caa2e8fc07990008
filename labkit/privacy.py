"""Defences and their audit (Lab 5): DP-SGD, the empirical epsilon of a membership attack, and the
label-only membership attack by perturbation.

* **DP-SGD** (Abadi et al. 2016, Algorithm 1): clip every example's gradient to norm ``C``, sum,
  add Gaussian noise ``N(0, sigma^2 C^2 I)``, average. :func:`dp_sgd_step` is one such step written
  out by hand; :func:`train_dp_opacus` trains a model with the real library (Opacus,
  ``PrivacyEngine.make_private_with_epsilon``). The batched version for many models at once, and
  the accountant, are in the core module :mod:`labkit.dp`.
* **Auditing** (Jagielski et al. 2020; Nasr et al. 2021): an ``(epsilon, delta)``-DP training
  algorithm forces every membership test to satisfy ``TPR <= e^epsilon FPR + delta`` and
  ``1 - FPR <= e^epsilon (1 - TPR) + delta``. Measured rates, made conservative with
  Clopper-Pearson bounds, turn that into a lower bound on epsilon: :func:`empirical_epsilon`.
* **Label-only membership inference** (Choquette-Choo et al. 2021): with only the predicted label,
  query perturbed copies of a record and score by how often the label stays right (members sit
  farther from the decision boundary): :func:`label_only_scores`.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dp import sample_rate_for
from .utils import as_binary, as_features, as_labels, check_int, device_of, make_generator, spawn_seed

__all__ = [
    "DPStep",
    "dp_sgd_step",
    "OpacusRun",
    "train_dp_opacus",
    "ConfidenceBounds",
    "clopper_pearson",
    "EpsilonBound",
    "empirical_epsilon",
    "LabelOnlyScores",
    "label_only_scores",
]


# ----------------------------------------------------------------------------------------------
# DP-SGD
# ----------------------------------------------------------------------------------------------
@dataclass
class DPStep:
    """What one :func:`dp_sgd_step` did.

    Attributes:
        per_example_norms: float ``(B,)``, the norm of each example's whole gradient (all
            parameters together) before clipping.
        grads: the noisy averaged gradient, one tensor per parameter (in ``model.parameters()``
            order, same shapes), i.e. what the step subtracted ``lr`` times.
    """

    per_example_norms: torch.Tensor
    grads: list[torch.Tensor]


def dp_sgd_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lr: float,
    max_grad_norm: float,
    noise_multiplier: float,
    expected_batch_size: int | None = None,
    seed: int | torch.Generator | None = 0,
) -> DPStep:
    """One DP-SGD step on a batch, by hand: per-example gradients, clipping, noise, SGD update.

    For every example ``i`` of the batch, ``g_i`` is the gradient of its own cross-entropy loss
    with respect to all parameters (flattened and concatenated, ``||g_i||`` is one norm). Then

        g_tilde = (sum_i g_i * min(1, C / (||g_i|| + 1e-6)) + N(0, sigma^2 C^2 I)) / B_expected

    and every parameter moves by ``-lr * g_tilde``. With ``noise_multiplier = 0`` this is exactly
    what Opacus's ``DPOptimizer`` wrapping ``torch.optim.SGD(lr)`` does on the same batch.

    Args:
        model: an ``nn.Module`` mapping ``(B, d)`` to logits ``(B, C)``; updated in place.
        x: float inputs ``(B, d)``; y: int64 labels ``(B,)``.
        lr: SGD learning rate.
        max_grad_norm: clipping norm C > 0.
        noise_multiplier: sigma >= 0 (the noise's standard deviation is ``sigma * C``).
        expected_batch_size: the divisor ``B_expected``; defaults to ``len(x)``.
        seed: seed or generator of the noise: one ``torch.randn`` per parameter, in
            ``model.parameters()`` order (nothing is drawn when sigma is 0).

    Returns:
        :class:`DPStep`. Abadi et al. (2016), Algorithm 1.
    """
    ### BEGIN SOLUTION lab5_defences
    if not max_grad_norm > 0 or noise_multiplier < 0:
        raise ValueError(f"max_grad_norm must be > 0 and noise_multiplier >= 0, got {max_grad_norm}, {noise_multiplier}")
    x = as_features(x, name="x").to(device_of(model))
    y = as_labels(y, name="y", n=x.shape[0]).to(x.device)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: b for n, b in model.named_buffers()}

    def loss_one(p, xi, yi):  # the loss of a single example, as a function of the parameters
        logits = torch.func.functional_call(model, ({**p, **frozen}), (xi.unsqueeze(0),))
        return F.cross_entropy(logits, yi.unsqueeze(0))

    detached = {n: p.detach() for n, p in params.items()}
    per_example = torch.func.vmap(torch.func.grad(loss_one), in_dims=(None, 0, 0))(detached, x, y)  # name -> (B, *shape)
    flat = torch.cat([per_example[n].reshape(x.shape[0], -1) for n in names], dim=1)  # (B, P)
    norms = flat.norm(dim=1)  # (B,)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # (B,)
    gen = make_generator(seed)
    divisor = x.shape[0] if expected_batch_size is None else expected_batch_size
    grads = []
    with torch.no_grad():
        for n in names:
            g = torch.einsum("b,b...->...", factor, per_example[n])  # sum of clipped gradients
            if noise_multiplier > 0:
                g = g + noise_multiplier * max_grad_norm * torch.randn(g.shape, generator=gen, dtype=g.dtype).to(g.device)
            g = g / divisor
            params[n].sub_(lr * g)
            grads.append(g)
    return DPStep(per_example_norms=norms.detach(), grads=grads)
    ### END SOLUTION


@dataclass
class OpacusRun:
    """A model trained by :func:`train_dp_opacus`.

    Attributes:
        model: the trained model (the caller's module, unwrapped from Opacus's ``GradSampleModule``).
        epsilon: the accountant's epsilon after training, at ``delta`` (``inf`` without noise).
        delta: the delta.
        noise_multiplier: sigma, as Opacus chose it for the target epsilon.
        sample_rate: Poisson sampling rate q.
        steps: optimizer steps taken.
    """

    model: nn.Module
    epsilon: float
    delta: float
    noise_multiplier: float
    sample_rate: float
    steps: int


def train_dp_opacus(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float,
    delta: float | None = None,
    max_grad_norm: float = 1.0,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.0,
    seed: int | torch.Generator | None = 0,
) -> OpacusRun:
    """Train ``model`` with DP-SGD through Opacus for a target ``(epsilon, delta)``.

    ``PrivacyEngine(accountant="rdp").make_private_with_epsilon`` picks sigma for ``epochs``
    epochs at Poisson rate ``q = sample_rate_for(n, batch_size)``; the data loader's sampler and
    the noise draw from generators seeded from ``seed`` (torch's global generator is untouched).

    Args:
        model: an ``nn.Module`` of layers Opacus supports (``nn.Linear``, activations); trained in place.
        x: float ``(n, d)``; y: int64 ``(n,)``.
        epsilon: target epsilon > 0.
        delta: defaults to ``1 / n``.
        max_grad_norm, epochs, batch_size, lr: DP-SGD's C and the recipe.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``), wrapped by Opacus's ``DPOptimizer``.
        seed: seed or generator.

    Returns:
        :class:`OpacusRun`. Abadi et al. (2016); Yousefpour et al. (2021), Opacus.
    """
    from opacus import PrivacyEngine

    x = as_features(x, name="x")
    y = as_labels(y, name="y", n=x.shape[0])
    n = x.shape[0]
    delta = 1.0 / n if delta is None else delta
    device = device_of(model)
    gen = make_generator(seed)
    loader_gen = torch.Generator().manual_seed(spawn_seed(gen))
    noise_gen = torch.Generator(device=device).manual_seed(spawn_seed(gen))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x.to(device), y.to(device)), batch_size=batch_size, shuffle=True, generator=loader_gen)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    with warnings.catch_warnings():  # Opacus's notices (secure RNG off, backward hooks) on every run
        warnings.simplefilter("ignore", UserWarning)
        engine = PrivacyEngine(accountant="rdp")
        private, dp_opt, dp_loader = engine.make_private_with_epsilon(
            module=model, optimizer=opt, data_loader=loader, target_epsilon=epsilon, target_delta=delta,
            epochs=epochs, max_grad_norm=max_grad_norm, noise_generator=noise_gen,
        )
        private.train()
        steps = 0
        for _ in range(epochs):
            for xb, yb in dp_loader:
                if len(xb) == 0:  # an empty Poisson batch (probability (1 - q)^n)
                    continue
                dp_opt.zero_grad(set_to_none=True)
                F.cross_entropy(private(xb), yb).backward()
                dp_opt.step()
                steps += 1
        spent = engine.get_epsilon(delta)
    private.remove_hooks()  # the caller's module, without Opacus's per-sample hooks
    trained = private._module
    trained.eval()
    q = sample_rate_for(n, batch_size)
    return OpacusRun(model=trained, epsilon=float(spent), delta=float(delta), noise_multiplier=float(dp_opt.noise_multiplier), sample_rate=q, steps=steps)


# ----------------------------------------------------------------------------------------------
# Auditing: Clopper-Pearson and the empirical epsilon
# ----------------------------------------------------------------------------------------------
@dataclass
class ConfidenceBounds:
    """One-sided Clopper-Pearson bounds on a binomial proportion.

    Attributes:
        lower: float64 tensor: ``Pr[p >= lower] >= confidence``.
        upper: float64 tensor: ``Pr[p <= upper] >= confidence`` (each bound on its own).
    """

    lower: torch.Tensor
    upper: torch.Tensor


def clopper_pearson(successes, trials, *, confidence: float = 0.95) -> ConfidenceBounds:
    """Exact one-sided confidence bounds for a proportion from ``successes`` out of ``trials``.

    With ``alpha = 1 - confidence``: ``lower = Beta^{-1}(alpha; k, n - k + 1)`` (0 when ``k = 0``)
    and ``upper = Beta^{-1}(1 - alpha; k + 1, n - k)`` (1 when ``k = n``), the quantiles of the
    Beta distribution (Clopper and Pearson 1934), computed with ``scipy.special.betaincinv``.
    Closed forms: ``upper(0, n) = 1 - alpha^(1/n)`` and ``lower(n, n) = alpha^(1/n)``.

    Args:
        successes: int tensor (any shape) of counts k; trials: int tensor (broadcastable) n >= 1.
        confidence: in (0, 1).

    Returns:
        :class:`ConfidenceBounds` of float64 tensors of the broadcast shape.
    """
    from scipy.special import betaincinv

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    k = torch.as_tensor(successes).double()
    n = torch.as_tensor(trials).double()
    k, n = torch.broadcast_tensors(k, n)
    if (n < 1).any() or (k < 0).any() or (k > n).any() or (k != k.round()).any():
        raise ValueError("need integer counts with 0 <= successes <= trials and trials >= 1")
    alpha = 1.0 - confidence
    kn, nn_ = k.numpy(), n.numpy()
    with np.errstate(all="ignore"):
        lo = np.where(kn > 0, betaincinv(np.maximum(kn, 1e-300), nn_ - kn + 1, alpha), 0.0)
        hi = np.where(kn < nn_, betaincinv(kn + 1, np.maximum(nn_ - kn, 1e-300), 1.0 - alpha), 1.0)
    return ConfidenceBounds(lower=torch.from_numpy(np.asarray(lo, dtype=np.float64)), upper=torch.from_numpy(np.asarray(hi, dtype=np.float64)))


@dataclass
class EpsilonBound:
    """The empirical lower bound on epsilon from :func:`empirical_epsilon`.

    Attributes:
        epsilon: the bound (>= 0; 0 when no threshold gives evidence).
        threshold: the score threshold that attains it ("member" iff score >= threshold).
        direction: ``"tpr"`` (bound from ``TPR <= e^eps FPR + delta``) or ``"tnr"`` (from
            ``TNR <= e^eps FNR + delta``).
        tpr, fpr: the measured rates at that threshold.
        n_members, n_nonmembers: how many scores of each kind the bound rests on.
        confidence: the joint confidence of the two Clopper-Pearson bounds used.
    """

    epsilon: float
    threshold: float
    direction: str
    tpr: float
    fpr: float
    n_members: int
    n_nonmembers: int
    confidence: float


def empirical_epsilon(scores, is_member, *, delta: float, confidence: float = 0.95) -> EpsilonBound:
    """Lower bound on epsilon from membership scores, with Clopper-Pearson confidence bounds.

    For every threshold ``tau`` (each distinct score; "member" iff ``score >= tau``) count the
    true positives TP of the P members and the false positives FP of the N non-members. With
    ``a = 1 - confidence``, bound each rate one-sidedly at level ``1 - a/2`` (so that both bounds
    hold together with probability at least ``confidence``, by the union bound) and take

        eps_tpr(tau) = log((TPR_lower - delta) / FPR_upper)
        eps_tnr(tau) = log((TNR_lower - delta) / FNR_upper)

    where ``TPR_lower`` is the lower bound from (TP, P), ``FPR_upper`` the upper from (FP, N),
    ``TNR_lower`` the lower from (N - FP, N) and ``FNR_upper`` the upper from (P - TP, P);
    terms with a numerator <= 0 give no evidence. The result is the maximum over thresholds and
    both directions, floored at 0. Jagielski et al. (2020), Algorithm 2; Nasr et al. (2021).

    Caveats: the maximum over thresholds is taken on the same scores (no correction for choosing
    the threshold), and Clopper-Pearson treats records as independent trials, which they are only
    approximately when they share one training run.

    Args:
        scores: membership scores ``(M,)``, larger: more likely a member.
        is_member: bool ``(M,)``; both kinds must occur.
        delta: the delta of the guarantee being audited, in [0, 1).
        confidence: joint confidence in (0, 1).

    Returns:
        :class:`EpsilonBound`.
    """
    ### BEGIN SOLUTION lab5_defences
    s = torch.as_tensor(scores).double().flatten().cpu()
    m = as_binary(torch.as_tensor(is_member).flatten(), name="is_member", n=s.shape[0]).cpu()
    if not 0 <= delta < 1 or not 0 < confidence < 1:
        raise ValueError(f"delta must lie in [0, 1) and confidence in (0, 1), got {delta}, {confidence}")
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need both members and non-members, got {n_pos} and {n_neg}")
    if not torch.isfinite(s).all():
        raise ValueError("scores must be finite")
    order = torch.argsort(s, descending=True)
    s_sorted, m_sorted = s[order], m[order]
    tp = torch.cumsum(m_sorted.long(), 0)  # members among the top j+1 scores
    fp = torch.cumsum((~m_sorted).long(), 0)
    # a threshold at each distinct score: keep the last position of every run of equal scores
    end_of_run = torch.ones_like(m_sorted)
    end_of_run[:-1] = s_sorted[1:] != s_sorted[:-1]
    tp, fp, taus = tp[end_of_run], fp[end_of_run], s_sorted[end_of_run]
    level = 1 - (1 - confidence) / 2
    tpr_b = clopper_pearson(tp, n_pos, confidence=level)
    fpr_b = clopper_pearson(fp, n_neg, confidence=level)
    with torch.no_grad():
        eps_tpr = torch.log((tpr_b.lower - delta).clamp_min(0) / fpr_b.upper)  # -inf when no evidence
        tnr_lower = 1 - fpr_b.upper  # lower bound on TNR = (N - FP) / N
        fnr_upper = 1 - tpr_b.lower  # upper bound on FNR = (P - TP) / P
        eps_tnr = torch.log((tnr_lower - delta).clamp_min(0) / fnr_upper)
    best_tpr, best_tnr = int(eps_tpr.argmax()), int(eps_tnr.argmax())
    if eps_tpr[best_tpr] >= eps_tnr[best_tnr]:
        j, direction, value = best_tpr, "tpr", float(eps_tpr[best_tpr])
    else:
        j, direction, value = best_tnr, "tnr", float(eps_tnr[best_tnr])
    return EpsilonBound(
        epsilon=max(0.0, value), threshold=float(taus[j]), direction=direction, tpr=float(tp[j]) / n_pos,
        fpr=float(fp[j]) / n_neg, n_members=n_pos, n_nonmembers=n_neg, confidence=confidence,
    )
    ### END SOLUTION


# ----------------------------------------------------------------------------------------------
# Label-only membership inference
# ----------------------------------------------------------------------------------------------
@dataclass
class LabelOnlyScores:
    """What :func:`label_only_scores` measured.

    Attributes:
        scores: float64 ``(N,)`` in [0, 1]: the fraction of the ``n_copies + 1`` queries of each
            record (the record itself and its perturbed copies) labelled ``y``; larger: more likely a member.
        queries: how many records were sent to the oracle in total, ``N * (n_copies + 1)``.
    """

    scores: torch.Tensor
    queries: int


def label_only_scores(
    oracle: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    r: int,
    n_copies: int,
    batch_size: int = 8192,
    seed: int | torch.Generator | None = 0,
) -> LabelOnlyScores:
    """Label-only membership scores by perturbation of binary records.

    Every record is queried as it is and as ``n_copies`` copies, each with exactly ``r`` distinct
    features flipped (0 <-> 1, positions uniform at random, drawn independently per copy). The
    score is the fraction of these ``n_copies + 1`` answers that equal the true label: a model is
    robust around its training records, so members keep their label under larger perturbations.
    With ``n_copies = 0`` it is the gap attack (1 if the record is classified correctly, else 0).

    Args:
        oracle: a callable on ``(m, d)`` records returning labels int64 ``(m,)`` (a
            :class:`labkit.oracle.Oracle` with ``output="label"``), or probabilities ``(m, C)``,
            of which the arg-max is taken.
        x: binary records ``(N, d)`` (0/1 floats); y: true labels ``(N,)``.
        r: features flipped per copy, ``0 <= r <= d``.
        n_copies: perturbed copies per record, >= 0.
        batch_size: records per oracle call.
        seed: seed or generator of the flipped positions.

    Returns:
        :class:`LabelOnlyScores`. Choquette-Choo et al. (2021), the data-augmentation attack for
        binary features (there: flip r random features).
    """
    ### BEGIN SOLUTION lab5_defences
    x = as_features(x, name="x")
    xb = as_binary(x.flatten(), name="x").view(x.shape)  # refuses anything but 0/1
    y = as_labels(y, name="y", n=x.shape[0])
    n, d = x.shape
    check_int("r", r)
    check_int("n_copies", n_copies)
    if r > d:
        raise ValueError(f"r must be at most the number of features {d}, got {r}")
    gen = make_generator(seed)
    q = n_copies + 1
    correct = torch.zeros(n, dtype=torch.float64)
    queries = 0
    per_call = max(1, batch_size // q)  # records per oracle call, with all their copies
    for start in range(0, n, per_call):
        rec = xb[start : start + per_call].float()  # (b, d)
        b = rec.shape[0]
        batch = rec.unsqueeze(1).repeat(1, q, 1)  # (b, q, d); copy 0 stays as it is
        if r > 0 and n_copies > 0:
            pos = torch.rand(b, n_copies, d, generator=gen).topk(r, dim=2).indices  # r distinct positions
            flips = torch.zeros(b, n_copies, d).scatter_(2, pos, 1.0)
            batch[:, 1:] = (batch[:, 1:] - flips).abs()  # x xor flip
        answers = oracle(batch.view(b * q, d))
        answers = torch.as_tensor(answers)
        labels = answers.argmax(dim=1) if answers.dim() == 2 else answers
        labels = labels.reshape(b, q).cpu()
        correct[start : start + b] = (labels == y[start : start + b, None]).double().mean(dim=1)
        queries += b * q
    return LabelOnlyScores(scores=correct, queries=queries)
    ### END SOLUTION
