"""Training and prediction: fit, evaluate, predict_proba.

The device comes from the model: inputs are moved to the model's device. Shuffling uses an
explicit generator, so the same ``seed`` gives the same model.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .utils import as_features, as_labels, device_of, make_generator, progress

__all__ = ["FitResult", "fit", "predict_proba", "predict", "evaluate"]


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
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
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
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    gen = make_generator(seed)
    n = x.shape[0]
    result = FitResult()
    model.train()
    for _ in progress(range(epochs), desc=desc):
        order = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])  # soft targets are accepted by cross_entropy
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        result.losses.append(total / n)
    model.eval()
    hard = y.argmax(1) if soft else y
    result.train_accuracy = float((predict(model, x) == hard).float().mean())
    return result


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
