"""DP-SGD machinery shared by the privacy lecture module and the experiments: the privacy
accountant (through Opacus) and DP-SGD for ``k`` batched models at once.

DP-SGD (Abadi et al. 2016, Algorithm 1) replaces each gradient step by: sample a batch (each record
independently with probability ``q``, "Poisson sampling"), compute every example's gradient ``g_i``,
clip it to norm at most ``C`` (``g_i * min(1, C / ||g_i||)``), sum, add Gaussian noise
``N(0, sigma^2 C^2 I)`` and divide by the expected batch size ``q n``. The accountant turns
``(sigma, q, steps)`` into ``(epsilon, delta)``; labkit uses Opacus's Renyi-DP accountant
(Mironov 2017; Mironov, Talwar and Zhang 2019 for the sampled Gaussian mechanism).

:func:`fit_batched_dp` trains the members of a :class:`labkit.ensemble.BatchedMLP` with DP-SGD in
one batched pass per step, as :func:`labkit.ensemble.fit_batched` does without DP. Per-example
gradients are never materialised: for a linear layer ``z = a W + b`` the gradient of example ``i``
is ``a_i^T delta_i`` (weights) and ``delta_i`` (bias), so ``||g_i||^2 = (||a_i||^2 + 1) ||delta_i||^2``
(Goodfellow 2015, "Efficient per-example gradient computations"), and the clipped sum is
``a^T (c * delta)`` with the per-example clip factors ``c``: one ordinary backward pass with
rescaled errors. Clipping and normalisation follow Opacus (clip factor
``min(1, C / (||g_i|| + 1e-6))``; sum divided by ``int(q n)``), so that one step equals an Opacus
step on the same batch with the noise off (``tests/test_privacy.py``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .ensemble import BatchedMLP, _batched_data, _ensemble_k, _forward_keeping_activations, _StackedAdam
from .utils import check_int, device_of, make_generator, progress

__all__ = [
    "sample_rate_for",
    "expected_batch_size",
    "noise_multiplier_for",
    "epsilon_spent",
    "BatchedDPFitResult",
    "dp_clipped_grads_batched",
    "fit_batched_dp",
]

def sample_rate_for(n: int, batch_size: int) -> float:
    """Poisson sampling rate ``q = 1 / ceil(n / batch_size)``: what Opacus derives from a data
    loader of ``n`` records in batches of ``batch_size`` (one "epoch" is ``1 / q`` steps)."""
    check_int("n", n, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    return 1.0 / math.ceil(n / batch_size)


def expected_batch_size(n: int, sample_rate: float) -> int:
    """``int(n q)``, the divisor of the noisy gradient sum (Opacus's ``expected_batch_size``)."""
    return max(1, int(n * sample_rate))


def noise_multiplier_for(epsilon: float, *, delta: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier ``sigma`` for which ``steps`` DP-SGD steps at rate ``q`` are
    ``(epsilon, delta)``-DP, by Opacus's RDP accountant (binary search, within 0.01 in epsilon; Opacus's default Renyi orders, the
    ones ``PrivacyEngine(accountant="rdp").make_private_with_epsilon`` uses, so both give the same sigma).

    Returns ``0.0`` for ``epsilon = inf`` (no noise: not private).
    """
    if epsilon == math.inf:
        return 0.0
    _check_eps_delta(epsilon, delta)
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate, steps=steps, accountant="rdp"))


def epsilon_spent(noise_multiplier: float, *, sample_rate: float, steps: int, delta: float) -> float:
    """The epsilon that Opacus's RDP accountant gives for ``steps`` steps of the sampled Gaussian
    mechanism (noise multiplier ``sigma``, rate ``q``) at ``delta``; ``inf`` for ``sigma = 0``."""
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(acc.get_epsilon(delta=delta))


def _check_eps_delta(epsilon: float, delta: float) -> None:
    if not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ValueError(f"epsilon must be a positive number (or math.inf for no privacy), got {epsilon!r}")
    if not (isinstance(delta, (int, float)) and 0 < delta < 1):
        raise ValueError(f"delta must lie in (0, 1), got {delta!r}")


@dataclass
class BatchedDPFitResult:
    """What :func:`fit_batched_dp` reports.

    Attributes:
        losses: float64 ``(epochs, k)``: mean training loss of each member's sampled records per epoch.
        train_accuracy: float64 ``(k,)`` on each member's own training data after training.
        noise_multiplier: sigma (0 for no noise).
        max_grad_norm: the clipping norm C.
        sample_rate: q.
        steps: DP-SGD steps taken.
        epsilon: the accountant's epsilon at ``delta`` (``inf`` without noise).
        delta: the delta of ``epsilon``.
    """

    losses: torch.Tensor
    train_accuracy: torch.Tensor
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    epsilon: float
    delta: float


@torch.no_grad()
def dp_clipped_grads_batched(model: BatchedMLP, x: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, *, max_grad_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-example clipped gradients of every member, written into the parameters' ``.grad``.

    Args:
        model: a :class:`BatchedMLP` with ``k`` members.
        x: float ``(k, B, d)`` batches; y: int64 ``(k, B)`` labels.
        valid: bool ``(k, B)``: which rows are real examples (Poisson batches differ in size and
            are padded to the largest; padded rows contribute nothing).
        max_grad_norm: the clipping norm C.

    Returns:
        ``(norms, losses)``: float ``(k, B)`` per-example gradient norms before clipping (0 on
        padding) and per-example cross-entropy losses. ``.grad`` of every weight ``(k, in, out)``
        and bias ``(k, out)`` holds ``sum_i clip_C(g_i)`` (not yet noised or averaged).
    """
    weights, biases = list(model.weights), list(model.biases)
    relu = model.activation == "relu"
    acts, z = _forward_keeping_activations(model, x)  # z: (k, B, C)
    logp = torch.log_softmax(z, dim=2)
    losses = -logp.gather(2, y.unsqueeze(2)).squeeze(2)  # (k, B)
    delta = logp.exp_()
    delta.scatter_add_(2, y.unsqueeze(2), torch.full_like(losses, -1.0).unsqueeze(2))  # p - onehot(y): d loss_i / d z_i
    deltas = [None] * len(weights)
    sq_norm = torch.zeros_like(losses)  # (k, B)
    for layer in range(len(weights) - 1, -1, -1):
        deltas[layer] = delta
        a = acts[layer]
        # ||a_i^T delta_i||_F^2 + ||delta_i||^2 = (||a_i||^2 + 1) ||delta_i||^2
        sq_norm += (a.square().sum(dim=2) + 1.0) * delta.square().sum(dim=2)
        if layer > 0:
            delta = torch.bmm(delta, weights[layer].transpose(1, 2))  # (k, B, in)
            delta = torch.where(a > 0, delta, 0.0) if relu else delta * (1 - a * a)
    norms = sq_norm.sqrt() * valid  # (k, B)
    clip = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * valid  # Opacus's clip factor; 0 on padding
    for layer, d in enumerate(deltas):
        scaled = d * clip.unsqueeze(2)  # (k, B, out)
        weights[layer].grad = torch.bmm(acts[layer].transpose(1, 2), scaled)  # (k, in, out)
        biases[layer].grad = scaled.sum(dim=1)  # (k, out)
    return norms, losses


def fit_batched_dp(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epsilon: float | None = None,
    noise_multiplier: float | None = None,
    delta: float | None = None,
    max_grad_norm: float = 1.0,
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.0,
    seed: int | torch.Generator | None = 0,
    desc: str = "DP-SGD ensemble",
) -> BatchedDPFitResult:
    """Train the ``k`` members of a :class:`BatchedMLP` with DP-SGD at once, each on its own data.

    Each step, member ``i`` samples each of its ``n`` records with probability
    ``q = sample_rate_for(n, batch_size)`` (Poisson sampling, as the accountant assumes), computes
    the per-example gradients' norms without materialising them, clips each to ``max_grad_norm``,
    sums, adds ``N(0, (sigma C)^2)`` to every coordinate, divides by ``int(q n)`` and takes an Adam
    or SGD step (as Opacus's ``DPOptimizer`` wrapping ``torch.optim.Adam`` or ``SGD``). An epoch is ``1 / q`` steps.
    Members are independent: member ``i`` is ``(epsilon, delta)``-DP with respect to its own data.

    Draw order (from ``make_generator(seed)``), per step: ``torch.rand(k, n)`` for the sampling,
    then one ``torch.randn`` per parameter tensor for the noise (when ``sigma > 0``).

    Args:
        model: a :class:`labkit.ensemble.BatchedMLP` with ``k`` members.
        x: float ``(k, n, d)`` (member i trains on ``x[i]``) or ``(n, d)`` shared; y: ``(k, n)`` or ``(n,)``.
        epsilon: target epsilon; sigma is chosen by :func:`noise_multiplier_for` (``math.inf``: no
            noise, clipping only). Give exactly one of ``epsilon`` and ``noise_multiplier``.
        noise_multiplier: sigma directly (0: no noise).
        delta: defaults to ``1 / n``.
        max_grad_norm: clipping norm C.
        epochs, batch_size, lr: ``epochs / q`` steps at expected batch size ``batch_size``; the learning rate.
        optimizer: ``"adam"`` (betas 0.9, 0.999) or ``"sgd"`` (with ``momentum``), applied to the
            noisy averaged gradient.
        momentum: SGD's momentum (heavy ball, as ``torch.optim.SGD``); ignored by Adam.
        seed: seed or generator of the sampling and the noise.
        desc: label of the progress bar.

    Returns:
        :class:`BatchedDPFitResult`. Abadi et al. (2016), Algorithm 1, with Poisson sampling.
    """
    if (epsilon is None) == (noise_multiplier is None):
        raise ValueError(f"give exactly one of epsilon and noise_multiplier, got epsilon={epsilon!r}, noise_multiplier={noise_multiplier!r}")
    check_int("epochs", epochs, minimum=1)
    if not max_grad_norm > 0 or not lr > 0:
        raise ValueError(f"max_grad_norm and lr must be > 0, got {max_grad_norm}, {lr}")
    k = _ensemble_k(model)
    if type(model) is not BatchedMLP:
        raise ValueError(f"fit_batched_dp trains a labkit.ensemble.BatchedMLP, got {type(model).__name__}")
    x, y = _batched_data(x, y, k=k, n_classes=model.n_classes)
    device = device_of(model)
    x, y = x.to(device, model.weights[0].dtype), y.to(device)
    n = x.shape[1]
    delta = 1.0 / n if delta is None else delta
    q = sample_rate_for(n, batch_size)
    steps_per_epoch = round(1 / q)
    steps = epochs * steps_per_epoch
    if noise_multiplier is None:
        noise_multiplier = noise_multiplier_for(epsilon, delta=delta, sample_rate=q, steps=steps)
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    spent = epsilon_spent(noise_multiplier, sample_rate=q, steps=steps, delta=delta)
    denom = expected_batch_size(n, q)
    params = [*model.weights, *model.biases]
    if optimizer == "adam":
        opt = _StackedAdam(params, lr=lr, weight_decay=0.0)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, foreach=True)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    gen = make_generator(seed)
    flat_x = x.reshape(k * n, -1) if x.stride(0) else None
    offsets = torch.arange(k, device=device)[:, None] * n
    losses = torch.zeros(epochs, k, dtype=torch.float64, device=device)
    std = noise_multiplier * max_grad_norm
    model.train()
    for epoch in progress(range(epochs), desc=desc):
        seen = torch.zeros(k, dtype=torch.float64, device=device)
        for _ in range(steps_per_epoch):
            take = (torch.rand(k, n, generator=gen) < q).to(device)  # (k, n) Poisson sampling
            counts = take.sum(dim=1)  # (k,)
            width = max(int(counts.max()), 1)
            idx = torch.argsort((~take).to(torch.int8), dim=1, stable=True)[:, :width]  # sampled rows first
            valid = torch.arange(width, device=device)[None, :] < counts[:, None]  # (k, B)
            yb = y.gather(1, idx)
            if flat_x is not None:
                xb = flat_x.index_select(0, (idx + offsets).reshape(-1)).view(k, width, -1)
            else:
                xb = x[0].index_select(0, idx.reshape(-1)).view(k, width, -1)
            _, per_example = dp_clipped_grads_batched(model, xb, yb, valid, max_grad_norm=max_grad_norm)
            for p in params:
                if std > 0:
                    p.grad.add_(torch.randn(p.shape, generator=gen).to(device), alpha=std)
                p.grad.div_(denom)
            opt.step()
            losses[epoch] += (per_example * valid).sum(dim=1).double()
            seen += counts.double()
        losses[epoch] /= seen.clamp_min(1)
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[:, s : s + 4096]).argmax(dim=2) == y[:, s : s + 4096]).sum(dim=1) for s in range(0, n, 4096))
    return BatchedDPFitResult(
        losses=losses.cpu(), train_accuracy=(correct.double() / n).cpu(), noise_multiplier=float(noise_multiplier),
        max_grad_norm=float(max_grad_norm), sample_rate=q, steps=steps, epsilon=spent, delta=float(delta),
    )

