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


# --------------------------------------------------------------------------------------------
# Batched training of k identical models (labkit.models.BatchedMLP)
# --------------------------------------------------------------------------------------------
__all__ += ["BatchedFitResult", "fit_batched", "predict_proba_batched"]


@dataclass
class BatchedFitResult:
    """What :func:`fit_batched` reports, per member.

    Attributes:
        losses: float64 tensor ``(epochs, k)``: mean training loss of each member in each epoch.
        train_accuracy: float64 tensor ``(k,)``: each member's accuracy on its own training
            data after the last epoch.
    """

    losses: torch.Tensor
    train_accuracy: torch.Tensor


def fit_batched(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int | torch.Generator | None = 0,
    shuffle: bool = True,
    desc: str = "training ensemble",
) -> BatchedFitResult:
    """Train the ``k`` members of a batched ensemble at once, each on its own data, with Adam.

    Every step runs one batched forward and backward pass over all members. The loss is the
    SUM over members of each member's mean cross-entropy on its batch, so member ``i``'s
    gradient is exactly the gradient of its own loss; Adam (with L2 ``weight_decay``) acts
    elementwise, so one Adam over the stacked parameters makes exactly the updates that ``k``
    separate Adams would make. Member ``i`` therefore behaves like
    ``fit(model.member(i), x[i], y[i], ...)`` run on the same batches (up to float rounding).

    Shuffling: at every epoch member ``i`` visits its records in the order
    ``perm[i] = argsort(u[i])`` where ``u = torch.rand(k, n, generator=gen)`` and
    ``gen = make_generator(seed)``; batch ``s`` of member ``i`` is ``perm[i, s:s + batch_size]``
    (the last one may be smaller). Each step gathers only its own ``(k, B, d)`` batch: one gather
    of the whole ``(k, n, d)`` data per epoch would cost more than all the batch gathers together.

    Args:
        model: a :class:`labkit.models.BatchedMLP` (anything mapping ``(k, B, d)`` to ``(k, B, C)``
            with attributes ``k`` and ``n_classes``).
        x: float inputs ``(k, n, d)``, member ``i`` trains on ``x[i]``; or ``(n, d)``, shared by all.
        y: int64 labels ``(k, n)``, or ``(n,)`` when shared.
        epochs, batch_size, lr: the usual (Adam, betas (0.9, 0.999), eps 1e-8).
        weight_decay: L2 penalty coefficient, applied by Adam as in :func:`fit`.
        seed: seed or generator for the shuffling.
        shuffle: False keeps the given order (every epoch the same batches).
        desc: label of the progress bar.

    Returns:
        :class:`BatchedFitResult`.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    k, n_classes = _ensemble_k(model), getattr(model, "n_classes", None)
    x, y = _batched_data(x, y, k=k, n_classes=n_classes)
    device = device_of(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x, y = x.to(device, dtype), y.to(device)
    n = x.shape[1]
    params = [p for p in model.parameters() if p.requires_grad]
    # Adam is elementwise: stacking k members' parameters changes nothing but the speed.
    opt = _StackedAdam(params, lr=lr, weight_decay=weight_decay)
    gen = make_generator(seed)
    if x.stride(0):  # member i's record j is row i*n + j of the flattened data
        src, offsets = x.reshape(k * n, -1), torch.arange(k, device=device)[:, None] * n
    else:  # one (n, d) array shared by all members
        src, offsets = x[0], 0
    losses = torch.zeros(epochs, k, dtype=torch.float64, device=device)
    # A BatchedMLP gets hand-written gradients (no autograd graph: fewer, larger kernels).
    manual = _is_plain_batched_mlp(model)
    if manual:
        for p in params:
            p.grad = torch.zeros_like(p)  # written in place by every step, never zeroed
    model.train()
    for epoch in progress(range(epochs), desc=desc):
        if shuffle:
            perm = torch.rand(k, n, generator=gen).argsort(dim=1).to(device)  # (k, n)
            ye = y.gather(1, perm)  # (k, n): labels are small, gather them at once
            rows = perm + offsets  # (k, n) rows of src
        else:
            ye = y
        total = losses[epoch]
        for start in range(0, n, batch_size):
            stop = start + batch_size
            yb = ye[:, start:stop]
            if not shuffle:
                xb = x[:, start:stop]  # a view
            else:  # gather this step's batch only: one index_select of k*B rows
                r = rows[:, start:stop]
                xb = src.index_select(0, r.reshape(-1)).view(k, r.shape[1], -1)  # (k, B, d)
            if manual:
                per_member = _mlp_loss_and_grad(model, xb, yb)  # (k,), grads written
            else:
                logits = model(xb)  # (k, B, C)
                per_example = F.cross_entropy(logits.flatten(0, 1), yb.flatten(), reduction="none")  # (k*B,)
                per_member = per_example.view(k, -1).mean(dim=1)  # (k,)
                for p in params:
                    p.grad = None
                per_member.sum().backward()
                per_member = per_member.detach()
            opt.step()
            total += per_member * xb.shape[1]  # stays on the device: no sync per step
        total /= n
    model.eval()
    with torch.no_grad():
        correct = sum(((model(x[:, s : s + 4096]).argmax(dim=2) == y[:, s : s + 4096]).sum(dim=1) for s in range(0, n, 4096)))
    acc = correct.double() / n  # (k,)
    return BatchedFitResult(losses=losses.cpu(), train_accuracy=acc.cpu())


@torch.no_grad()
def predict_proba_batched(model: nn.Module, x: torch.Tensor, *, batch_size: int = 4096) -> torch.Tensor:
    """Softmax probabilities of every member of a batched ensemble, on ``x``'s device.

    Args:
        model: a :class:`labkit.models.BatchedMLP`.
        x: float ``(m, d)`` (every member sees the same inputs) or ``(k, m, d)`` (member i sees ``x[i]``).

    Returns:
        float32 tensor ``(k, m, C)``; softmax computed in float64 for accuracy near 0 and 1.
    """
    k = _ensemble_k(model)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.dim() not in (2, 3) or (x.dim() == 3 and x.shape[0] != k):
        raise ValueError(f"x must have shape (m, d) or ({k}, m, d), got {tuple(x.shape)}")
    x = x.to(next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32))
    was_training = model.training
    model.eval()
    device = device_of(model)
    m = x.shape[-2]
    out = []
    for i in range(0, m, batch_size):
        xb = x[..., i : i + batch_size, :].to(device)
        out.append(torch.softmax(model(xb).double(), dim=2).float().to(x.device))
    model.train(was_training)
    if not out:
        return torch.empty(k, 0, getattr(model, "n_classes", 0), device=x.device)
    return torch.cat(out, dim=1)


def _is_plain_batched_mlp(model: nn.Module) -> bool:
    from .models import BatchedMLP

    return type(model) is BatchedMLP and all(p.requires_grad for p in model.parameters())


@torch.no_grad()
def _mlp_loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Forward and backward of a BatchedMLP by hand; returns each member's mean loss ``(k,)``.

    The loss of member i is its mean cross-entropy over the batch; the gradient of the SUM of
    the members' losses is written into ``.grad`` of the stacked parameters. With
    ``a_0 = x``, ``z_l = a_{l-1} W_l + b_l``, ``a_l = act(z_l)`` and the softmax ``p`` of
    ``z_L``: ``dL/dz_L = (p - onehot(y)) / B``, ``dW_l = a_{l-1}^T g_l``, ``db_l = sum_B g_l``,
    ``g_{l-1} = (g_l W_l^T) * act'(z_{l-1})``.
    """
    weights, biases = list(model.weights), list(model.biases)
    relu = model.activation == "relu"
    acts = [x]  # a_0 .. a_{L-1}, each (k, B, width)
    for w, b in zip(weights[:-1], biases[:-1]):
        z = torch.baddbmm(b.unsqueeze(1), acts[-1], w)
        acts.append(z.clamp_min_(0) if relu else z.tanh_())
    z = torch.baddbmm(biases[-1].unsqueeze(1), acts[-1], weights[-1])  # (k, B, C) logits
    batch = z.shape[1]
    logp = torch.log_softmax(z, dim=2)
    target = y.unsqueeze(2)  # (k, B, 1)
    loss = logp.gather(2, target).squeeze(2).mean(dim=1).neg_()  # (k,)
    g = logp.exp_()  # softmax p, in place
    g.scatter_add_(2, target, _minus_ones(target.shape, g.dtype, g.device))  # p - onehot(y)
    g.mul_(1.0 / batch)
    for layer in range(len(weights) - 1, -1, -1):
        a = acts[layer]
        torch.bmm(a.transpose(1, 2), g, out=weights[layer].grad)  # (k, in, out)
        torch.sum(g, dim=1, out=biases[layer].grad)  # (k, out)
        if layer > 0:
            g = torch.bmm(g, weights[layer].transpose(1, 2))  # (k, B, in)
            if relu:
                g = torch.ops.aten.threshold_backward(g, a, 0)  # g where a > 0, else 0
            else:
                g.mul_(1 - a * a)
    return loss


_MINUS_ONES: dict = {}


def _minus_ones(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A cached tensor of -1s (read only): one allocation per batch shape, not one per step."""
    key = (tuple(shape), dtype, device)
    if key not in _MINUS_ONES:
        if len(_MINUS_ONES) > 64:
            _MINUS_ONES.clear()
        _MINUS_ONES[key] = torch.full(shape, -1.0, dtype=dtype, device=device)
    return _MINUS_ONES[key]


class _StackedAdam:
    """Adam (betas 0.9, 0.999; eps 1e-8; coupled L2 ``weight_decay``) over a few large tensors.

    Makes the same updates as ``torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)``.
    Where torch has a fused Adam kernel for the parameters' device (CPU and CUDA), it is called
    directly: ``torch.optim.Adam.step`` spends more time in Python bookkeeping than a small
    ensemble's update takes. Elsewhere it falls back to ``torch.optim.Adam(foreach=True)``.
    """

    def __init__(self, params: list[torch.Tensor], *, lr: float, weight_decay: float) -> None:
        self.params, self.lr, self.weight_decay = params, float(lr), float(weight_decay)
        devices = {p.device for p in params}
        fused = getattr(torch, "_fused_adam_", None)
        self._fused = fused if len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda") else None
        if self._fused is None:
            self._opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
            return
        self.exp_avgs = [torch.zeros_like(p) for p in params]
        self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        if self._fused is None:
            self._opt.step()
            return
        live = [i for i, p in enumerate(self.params) if p.grad is not None]  # as torch: skip grad None
        if not live:
            return
        params, steps = [self.params[i] for i in live], [self.steps[i] for i in live]
        torch._foreach_add_(steps, 1)
        self._fused(
            params, [p.grad for p in params], [self.exp_avgs[i] for i in live], [self.exp_avg_sqs[i] for i in live], [], steps,
            amsgrad=False, lr=self.lr, beta1=0.9, beta2=0.999, weight_decay=self.weight_decay, eps=1e-8,
            maximize=False, grad_scale=None, found_inf=None,
        )


def _ensemble_k(model: nn.Module) -> int:
    k = getattr(model, "k", None)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"model must be a batched ensemble with an int attribute k >= 1 (e.g. BatchedMLP), got {type(model).__name__}")
    return k


def _batched_data(x, y, *, k: int, n_classes: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Check x (k, n, d) / y (k, n), or broadcast shared x (n, d) / y (n,) to all k members."""
    x = x if isinstance(x, torch.Tensor) else torch.as_tensor(x)
    y = y if isinstance(y, torch.Tensor) else torch.as_tensor(y)
    if x.dim() == 2:
        x = as_features(x, name="x").unsqueeze(0).expand(k, -1, -1)
        y = as_labels(y, name="y", n_classes=n_classes, n=x.shape[1]).unsqueeze(0).expand(k, -1)
        return x, y
    if x.dim() != 3 or x.shape[0] != k:
        raise ValueError(f"x must have shape ({k}, n, d) or (n, d), got {tuple(x.shape)}")
    if y.shape != x.shape[:2]:
        raise ValueError(f"y must have shape {tuple(x.shape[:2])} (one label per record of each member), got {tuple(y.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.float()
    # One cheap pass (a sum) instead of isfinite() over k*n*d values; the exact check runs only
    # when the sum is not finite (NaN/inf present, or a float overflow of huge but finite values).
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
        raise ValueError("x must be finite; it contains NaN or inf")
    y = as_labels(y.reshape(-1), name="y", n_classes=n_classes).view(y.shape)
    return x, y
