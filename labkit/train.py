"""Training and prediction: the one training loop, fit, evaluate, predict_proba.

:func:`train_loop` is the only optimisation loop of labkit: :func:`fit`, the watermark's
``mark``, the language model of ``memorization`` and Shokri's per-class attack models all run
through it, each with its own batches and loss. The device comes from the model: inputs are
moved to the model's device. Shuffling uses an explicit generator, so the same ``seed`` gives
the same model. (The batched ensemble of ``k`` models has its own fast path, in
:mod:`labkit.ensemble`.)
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .utils import (
    as_features,
    as_labels,
    device_of,
    init_from_seed,
    make_generator,
    progress,
    spawn_seed,
)

__all__ = ["train_loop", "FitResult", "fit", "soft_targets", "predict_proba", "predict", "evaluate"]

OPTIMIZERS = ("adam", "sgd")
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def train_loop(
    params: Iterable[torch.Tensor],
    batches: Callable[[], Iterable[tuple[torch.Tensor, ...]]],
    loss_fn: Callable[..., torch.Tensor],
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    max_grad_norm: float | None = None,
    desc: str = "training",
) -> list[float]:
    """Minimise ``loss_fn`` over ``epochs`` passes of mini-batches.

    Each pass calls ``batches()`` for a fresh iterable of batches (tuples of tensors) and makes
    one optimizer step per batch: ``loss = loss_fn(*batch)``, backward, optional gradient-norm
    clipping, step. The caller puts its model in train mode and decides what a batch is.

    Args:
        params: the tensors to optimise (e.g. ``model.parameters()``); those whose ``.grad``
            stays None (frozen layers) are not changed.
        batches: called once per pass; yields tuples of tensors.
        loss_fn: maps the tensors of one batch to a scalar loss.
        epochs: number of passes (>= 1).
        lr: step size (> 0).
        weight_decay: L2 penalty coefficient, applied by the optimizer.
        optimizer: ``"adam"`` (betas 0.9, 0.999) or ``"sgd"`` (momentum 0.9).
        max_grad_norm: clip the gradients' global L2 norm to this value before each step.
        desc: label of the progress bar.

    Returns:
        the mean loss of each pass, every batch weighted by its size (its first tensor's length).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1 or not lr > 0:
        raise ValueError(f"epochs must be an int >= 1 and lr > 0, got {epochs!r} and {lr!r}")
    params = list(params)
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    losses = []
    for _ in progress(range(epochs), desc=desc):
        total, count = 0.0, 0
        for batch in batches():
            loss = loss_fn(*batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, max_grad_norm)
            opt.step()
            size = len(batch[0])
            total += loss.item() * size
            count += size
        losses.append(total / max(count, 1))
    return losses


@dataclass
class FitResult:
    """What :func:`fit` reports.

    Attributes:
        losses: mean training loss of each epoch.
        train_accuracy: accuracy on the training data after the last epoch (hard labels:
            agreement with the argmax of soft targets).
    """

    losses: list[float] = field(default_factory=list)
    train_accuracy: float = float("nan")


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: str = "adam",
    seed: int | torch.Generator | None = 0,
    desc: str = "training",
) -> FitResult:
    """Train ``model`` in place with cross-entropy.

    Args:
        model: a module returning logits ``(N, C)``.
        x: inputs ``(N, ...)``.
        y: hard labels, int64 ``(N,)``, or soft targets, float ``(N, C)`` whose rows are
            probability vectors (e.g. a victim's answers, for a surrogate).
        epochs, batch_size, lr: the usual.
        weight_decay: L2 penalty coefficient, applied by the optimizer.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        seed: seed or generator for the shuffling.
        desc: label of the progress bar.

    Returns:
        :class:`FitResult`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    x = as_features(x, name="x")
    n_classes = getattr(model, "n_classes", None)
    soft = y.is_floating_point() and y.dim() == 2 if isinstance(y, torch.Tensor) else False
    if soft:
        if y.shape[0] != x.shape[0] or (n_classes is not None and y.shape[1] != n_classes):
            raise ValueError(f"soft targets must have shape ({x.shape[0]}, {n_classes}), got {tuple(y.shape)}")
    else:
        y = as_labels(y, name="y", n_classes=n_classes, n=x.shape[0])
    device = device_of(model)
    x, y = x.to(device), y.to(device)
    gen = make_generator(seed)
    n = x.shape[0]

    def batches():
        order = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(xb), yb)  # soft targets are accepted by cross_entropy

    model.train()
    result = FitResult()
    # Dropout draws from torch's generator: give it one of its own, seeded from `seed`, so that the
    # caller's random state is untouched (models without dropout draw nothing there).
    has_dropout = any(isinstance(m, _DROPOUT) and m.p > 0 for m in model.modules())
    context = init_from_seed(spawn_seed(gen), device=device) if has_dropout else contextlib.nullcontext()
    with context:
        result.losses = train_loop(model.parameters(), batches, loss_fn, epochs=epochs, lr=lr, weight_decay=weight_decay, optimizer=optimizer, desc=desc)
    model.eval()
    hard = y.argmax(1) if soft else y
    result.train_accuracy = float((predict(model, x) == hard).float().mean())
    return result


def soft_targets(answers: torch.Tensor) -> torch.Tensor:
    """Probability answers ``(N, C)`` as training targets for :func:`fit`: rows renormalised to sum
    to 1 (rounded or top-k answers break the sum); an all-zero row becomes uniform."""
    a = answers.double().clamp_min(0)
    s = a.sum(dim=1, keepdim=True)
    uniform = torch.full_like(a, 1.0 / a.shape[1])
    return torch.where(s > 0, a / s.clamp_min(1e-300), uniform).float()


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, *, temperature: float = 1.0, batch_size: int = 4096) -> torch.Tensor:
    """Softmax probabilities ``(N, C)`` of ``model`` on ``x``, returned on ``x``'s device.

    Args:
        temperature: divides the logits before the softmax (1 = the model's own probabilities).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    x = as_features(x, name="x")
    was_training = model.training
    model.eval()
    device = device_of(model)
    out = [torch.softmax(model(x[i : i + batch_size].to(device)).double() / temperature, dim=1) for i in range(0, x.shape[0], batch_size)]
    model.train(was_training)
    if not out:
        return torch.empty(0, getattr(model, "n_classes", 0), device=x.device)
    return torch.cat(out).float().to(x.device)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels, int64 ``(N,)``."""
    return predict_proba(model, x).argmax(dim=1)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``(x, y)`` as a float in ``[0, 1]``."""
    x = as_features(x, name="x")
    y = as_labels(y, name="y", n=x.shape[0])
    return float((predict(model, x).cpu() == y.cpu()).float().mean())
