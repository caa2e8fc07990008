"""Metric attacks and the Likelihood Ratio Attack (LiRA).

Membership scores follow the library's convention: larger means "more likely a member".

* Metric attacks threshold one number computed from the target's output on ``(x, y)``: the loss
  (Yeom et al. 2018), the top-1 confidence or the prediction entropy (Salem et al. 2019).
* LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles") calibrates
  that number per example: it trains shadow models ``f_shadow^i`` on random halves of a pool, so
  that every example is "in" for about half of them, fits one Gaussian to the example's
  logit-scaled confidence over the "in" shadows and one over the "out" shadows, and scores the
  target's confidence with a likelihood ratio (online) or a one-sided test against the "out"
  Gaussian alone (offline).

The common target setting of the membership labs (Purchase-like data, 100 classes, an MLP that
overfits) is :func:`labkit.targets.purchase_target_setting`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..ensemble import BatchedFitResult, BatchedMLP, fit_batched
from ..metrics import normalized_entropy
from ..targets import TargetSetting, purchase_target_setting
from ..utils import as_labels, as_probabilities, check_int, make_generator, spawn_seed

__all__ = [
    "loss_score",
    "confidence_score",
    "entropy_score",
    "logit_scale",
    "logit_scale_from_logits",
    "random_halves",
    "train_on_halves",
    "shadow_logit_scores",
    "gaussian_log_pdf",
    "LiraGaussians",
    "fit_lira_gaussians",
    "lira_online",
    "lira_offline",
]


# ----------------------------------------------------------------------------------------------
# Metric attacks
# ----------------------------------------------------------------------------------------------
def _check_probs(probs, name: str = "probs") -> torch.Tensor:
    return as_probabilities(probs, name=name, min_classes=2, normalized=False)


def loss_score(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss attack: minus the cross-entropy loss, ``log p_y`` (larger: more likely a member).

    Args:
        probs: the target's probability vectors ``(N, C)``.
        y: true labels, int64 ``(N,)``.

    Returns:
        float64 ``(N,)``. Thresholding it is Yeom et al. (2018)'s attack: "member if the loss is
        below the average training loss".
    """
    ### BEGIN SOLUTION lab4b_lira
    p = _check_probs(probs)
    y = as_labels(y, name="y", n_classes=p.shape[1], n=p.shape[0]).to(p.device)
    p_y = p.double().gather(1, y[:, None]).squeeze(1)  # (N,)
    return torch.log(p_y.clamp_min(1e-300))
    ### END SOLUTION


def confidence_score(probs: torch.Tensor) -> torch.Tensor:
    """Confidence attack: the largest probability ``max_c p_c`` (larger: more likely a member).

    Args:
        probs: the target's probability vectors ``(N, C)``.

    Returns:
        float64 ``(N,)``. Salem et al. (2019, adversary 3) threshold it; it needs no label.
    """
    ### BEGIN SOLUTION lab4b_lira
    return _check_probs(probs).double().max(dim=1).values
    ### END SOLUTION


def entropy_score(probs: torch.Tensor) -> torch.Tensor:
    """Entropy attack: minus the normalised prediction entropy (larger: more likely a member).

    Args:
        probs: the target's probability vectors ``(N, C)``.

    Returns:
        float64 ``(N,)`` in ``[-1, 0]``: ``(1/log C) sum_c p_c log p_c`` (0 for a one-hot
        output). Members get more certain predictions (Salem et al. 2019, the entropy-based
        threshold attack; the lecture's "prediction uncertainty").
    """
    ### BEGIN SOLUTION lab4b_lira
    return -normalized_entropy(_check_probs(probs).double())
    ### END SOLUTION


# ----------------------------------------------------------------------------------------------
# LiRA
# ----------------------------------------------------------------------------------------------
def logit_scale(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logit-scaled confidence ``phi(p_y) = log(p_y / (1 - p_y))`` of the true class.

    Computed as ``log p_y - log(sum_{c != y} p_c)``: summing the other classes instead of
    forming ``1 - p_y`` avoids the cancellation that makes ``1 - p_y`` zero once ``p_y`` rounds
    to 1, so ``phi`` stays finite and keeps ranking very confident members.

    Args:
        probs: probability vectors ``(N, C)``.
        y: true labels, int64 ``(N,)``.

    Returns:
        float64 ``(N,)``. Carlini et al. (2022, LiRA's logit scaling) use ``phi`` because it makes the
        per-example confidence distribution close to Gaussian.
    """
    ### BEGIN SOLUTION lab4b_lira
    p = _check_probs(probs).double()
    y = as_labels(y, name="y", n_classes=p.shape[1], n=p.shape[0]).to(p.device)
    p_y = p.gather(1, y[:, None]).squeeze(1)  # (N,)
    p_rest = p.scatter(1, y[:, None], 0.0).sum(dim=1)  # (N,), sum of the other classes
    tiny = 1e-300
    return torch.log(p_y.clamp_min(tiny)) - torch.log(p_rest.clamp_min(tiny))
    ### END SOLUTION


def logit_scale_from_logits(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``phi`` from logits: ``z_y - logsumexp_{c != y} z_c`` (exact, never saturates).

    Args:
        logits: ``(..., C)``; y: int64 labels ``(...)``.

    Returns:
        float64 tensor of ``y``'s shape; equals :func:`logit_scale` of ``softmax(logits)``.
    """
    z = logits.double()
    y = y.to(z.device)
    if z.shape[:-1] != y.shape:
        raise ValueError(f"logits (..., C) and y (...) must agree, got {tuple(z.shape)} and {tuple(y.shape)}")
    z_y = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    rest = z.scatter(-1, y.unsqueeze(-1), float("-inf"))
    return z_y - torch.logsumexp(rest, dim=-1)


def random_halves(n: int, k: int, *, seed: int | torch.Generator | None = 0) -> torch.Tensor:
    """Membership masks for ``k`` models trained on random halves of a pool of ``n`` examples.

    Models come in complementary pairs: model ``2j`` trains on a uniformly random half ``S_j``
    and model ``2j+1`` on the rest. So every model sees exactly ``n // 2`` examples (``n`` even)
    and, for even ``k``, every example is "in" for exactly ``k / 2`` models: the balanced design
    LiRA needs to fit both an "in" and an "out" Gaussian per example (Carlini et al. 2022).
    With odd ``k`` the last model gets a fresh random half.

    Args:
        n: pool size (even); k: number of models (>= 1).
        seed: seed or generator.

    Returns:
        bool tensor ``(k, n)``: ``in_mask[i, j]`` is True when example j is in model i's training set.
    """
    check_int("n", n, minimum=1)
    check_int("k", k, minimum=1)
    if n % 2:
        raise ValueError(f"n must be even so that halves have equal size, got {n}")
    gen = make_generator(seed)
    masks = torch.zeros(k, n, dtype=torch.bool)
    for i in range(0, k, 2):
        half = torch.randperm(n, generator=gen)[: n // 2]
        masks[i, half] = True
        if i + 1 < k:
            masks[i + 1] = ~masks[i]
    return masks


def train_on_halves(
    x: torch.Tensor, y: torch.Tensor, in_mask: torch.Tensor, *, setting: TargetSetting | None = None, seed: int | torch.Generator | None = 0
) -> tuple[BatchedMLP, BatchedFitResult]:
    """Train one model per row of ``in_mask`` on the pool examples it marks, all at once.

    Args:
        x: pool inputs ``(n, d)``; y: pool labels ``(n,)``.
        in_mask: bool ``(k, n)`` from :func:`random_halves`; every row must mark the same number
            of examples.
        setting: architecture and training recipe (default :func:`purchase_target_setting`).
        seed: seed or generator of the initialisation and the shuffling (the same seed gives the same models).

    Returns:
        the trained :class:`labkit.ensemble.BatchedMLP` (on ``x``'s device) and its fit report.
    """
    setting = setting or purchase_target_setting()
    if in_mask.dim() != 2 or in_mask.dtype != torch.bool or in_mask.shape[1] != x.shape[0]:
        raise ValueError(f"in_mask must be a bool tensor (k, {x.shape[0]}), got {in_mask.dtype} {tuple(in_mask.shape)}")
    counts = in_mask.sum(dim=1)
    if not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
        raise ValueError(f"every row of in_mask must mark the same positive number of examples, got counts {counts.unique().tolist()}")
    k, m = in_mask.shape[0], int(counts[0])
    idx = in_mask.nonzero()[:, 1].view(k, m).to(x.device)  # (k, m): row-major, so row i's examples
    gen = make_generator(seed)
    model = setting.new_ensemble(k, seed=spawn_seed(gen)).to(x.device)
    report = fit_batched(model, x[idx], y.to(x.device)[idx], seed=spawn_seed(gen), desc="shadow models", **setting.fit_kwargs())
    return model, report


def shadow_logit_scores(model: BatchedMLP, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``phi`` of every member of a batched ensemble on every example.

    Args:
        model: a trained :class:`labkit.ensemble.BatchedMLP` with k members (the shadows).
        x: inputs ``(n, d)``; y: their true labels, int64 ``(n,)``.

    Returns:
        float64 ``(k, n)`` on the CPU, computed from the logits (:func:`logit_scale_from_logits`),
        so it never saturates. Carlini et al. (2022), LiRA's logit scaling.
    """
    y = as_labels(y, name="y", n_classes=model.n_classes, n=x.shape[0])
    chunks = []
    with torch.no_grad():
        was_training = model.training
        model.eval()
        for s in range(0, x.shape[0], 4096):
            z = model(x[s : s + 4096].to(model.weights[0].device))  # (k, b, C)
            chunks.append(logit_scale_from_logits(z, y[s : s + 4096].to(z.device).expand(z.shape[0], -1)))
        model.train(was_training)
    return torch.cat(chunks, dim=1).cpu()


def gaussian_log_pdf(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian log density ``log N(x; mu, sigma^2)``, elementwise (broadcasting).

    Args:
        x, mu, sigma: tensors (or numbers) of broadcastable shapes; ``sigma > 0``.

    Returns:
        float64 ``-(x - mu)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2``: computed in logs, so it
        stays finite far in the tails where the density itself underflows.
    """
    x, mu, sigma = (torch.as_tensor(t, dtype=torch.float64) for t in (x, mu, sigma))
    return -0.5 * ((x - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)


@dataclass
class LiraGaussians:
    """Per-example Gaussians of ``phi`` over the "in" and the "out" shadow models.

    Attributes:
        mu_in, sigma_in, mu_out, sigma_out: float64 ``(n,)``.
        n_in, n_out: int64 ``(n,)``, how many shadows each estimate rests on.
    """

    mu_in: torch.Tensor
    sigma_in: torch.Tensor
    mu_out: torch.Tensor
    sigma_out: torch.Tensor
    n_in: torch.Tensor
    n_out: torch.Tensor


def _masked_mean_std(phi: torch.Tensor, mask: torch.Tensor, global_variance: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION lab4b_lira fit_lira_gaussians
    w = mask.double()  # (k, n)
    count = w.sum(dim=0)  # (n,)
    mu = (phi * w).sum(dim=0) / count.clamp_min(1)  # (n,)
    sq = ((phi - mu) ** 2 * w).sum(dim=0)  # (n,)
    usable = count >= 2
    if not usable.any() or global_variance:
        dof = (count - 1).clamp_min(0).sum()
        pooled = torch.sqrt(sq.sum() / dof) if dof > 0 else torch.tensor(float("nan"), dtype=torch.float64)
        sigma = pooled.expand_as(mu).clone()
    else:
        # one shadow gives no spread: such examples borrow the pooled spread of the others
        pooled = torch.sqrt(sq[usable].sum() / (count[usable] - 1).sum())
        sigma = torch.where(usable, torch.sqrt(sq / (count - 1).clamp_min(1)), pooled)
    mu = torch.where(count > 0, mu, torch.full_like(mu, float("nan")))
    return mu, sigma, count.long()
    ### END SOLUTION


def fit_lira_gaussians(
    phi_shadow: torch.Tensor, in_mask: torch.Tensor, *, global_variance: bool = False, min_sigma: float = 1e-3
) -> LiraGaussians:
    """Fit the "in" and "out" Gaussians of every example from the shadow models' ``phi``.

    Args:
        phi_shadow: float ``(k, n)``, ``phi`` of shadow i on example j (:func:`shadow_logit_scores`).
        in_mask: bool ``(k, n)``, True when example j was in shadow i's training set.
        global_variance: use one variance per side, pooled over all examples, instead of one per
            example: Carlini et al. (2022) recommend it with few shadows (fewer than 64), where
            per-example variances are noisy.
        min_sigma: floor on every standard deviation (a shadow set that agrees exactly would
            give a zero variance and an infinite score).

    Returns:
        :class:`LiraGaussians`; a side with no shadow for an example has ``mu`` NaN there, and
        with a single shadow it borrows the pooled standard deviation.
    """
    ### BEGIN SOLUTION lab4b_lira
    phi = phi_shadow if isinstance(phi_shadow, torch.Tensor) else torch.as_tensor(phi_shadow)
    if phi.dim() != 2 or not phi.is_floating_point():
        raise ValueError(f"phi_shadow must be a float tensor (k, n), got {phi.dtype} of shape {tuple(phi.shape)}")
    if in_mask.shape != phi.shape or in_mask.dtype != torch.bool:
        raise ValueError(f"in_mask must be a bool tensor of shape {tuple(phi.shape)}, got {in_mask.dtype} of shape {tuple(in_mask.shape)}")
    if not torch.isfinite(phi).all():
        raise ValueError("phi_shadow must be finite")
    phi = phi.double().cpu()
    in_mask = in_mask.cpu()
    mu_in, s_in, n_in = _masked_mean_std(phi, in_mask, global_variance)
    mu_out, s_out, n_out = _masked_mean_std(phi, ~in_mask, global_variance)
    return LiraGaussians(mu_in, s_in.clamp_min(min_sigma), mu_out, s_out.clamp_min(min_sigma), n_in, n_out)
    ### END SOLUTION


def _target_phi(phi_target, n: int) -> torch.Tensor:
    t = phi_target if isinstance(phi_target, torch.Tensor) else torch.as_tensor(phi_target)
    if t.shape != (n,) or not torch.isfinite(t).all():
        raise ValueError(f"phi_target must be a finite tensor of shape ({n},), got shape {tuple(t.shape)}")
    return t.double().cpu()


def lira_online(phi_target: torch.Tensor, gaussians: LiraGaussians) -> torch.Tensor:
    """Online LiRA score ``log N(phi; mu_in, s_in^2) - log N(phi; mu_out, s_out^2)``.

    Args:
        phi_target: float ``(n,)``, the target model's ``phi`` on each example (:func:`logit_scale`).
        gaussians: from :func:`fit_lira_gaussians`; every example needs "in" and "out" shadows.

    Returns:
        float64 ``(n,)``, the log likelihood ratio; larger: more likely a member
        (Carlini et al. 2022, Algorithm 1).
    """
    ### BEGIN SOLUTION lab4b_lira
    phi = _target_phi(phi_target, gaussians.mu_in.shape[0])
    if (gaussians.n_in == 0).any() or (gaussians.n_out == 0).any():
        raise ValueError("online LiRA needs at least one 'in' and one 'out' shadow model per example")
    return gaussian_log_pdf(phi, gaussians.mu_in, gaussians.sigma_in) - gaussian_log_pdf(phi, gaussians.mu_out, gaussians.sigma_out)
    ### END SOLUTION


def lira_offline(phi_target: torch.Tensor, gaussians: LiraGaussians) -> torch.Tensor:
    """Offline LiRA score: a one-sided test of ``phi`` against the "out" Gaussian alone.

    The score is ``-log Pr[Z >= phi]`` with ``Z ~ N(mu_out, s_out^2)``: minus the log p-value of
    "this example was not trained on", computed stably (``log_ndtr``). It ranks like
    ``(phi - mu_out) / s_out`` and needs only "out" shadows, which an attacker can train before
    seeing the examples to test (Carlini et al. 2022, offline LiRA).

    Args:
        phi_target: float ``(n,)``; gaussians: from :func:`fit_lira_gaussians`.

    Returns:
        float64 ``(n,)``, >= 0; larger: more likely a member.
    """
    ### BEGIN SOLUTION lab4b_lira
    phi = _target_phi(phi_target, gaussians.mu_out.shape[0])
    if (gaussians.n_out == 0).any():
        raise ValueError("offline LiRA needs at least one 'out' shadow model per example")
    z = (phi - gaussians.mu_out) / gaussians.sigma_out
    return -torch.special.log_ndtr(-z)
    ### END SOLUTION
