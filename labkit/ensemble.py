"""Batched ensembles: ``k`` identical MLPs stored, trained and evaluated as one model.

Shadow-model attacks need many identical small models, each trained on its own data (Shokri et
al. 2017; Carlini et al. 2022 train up to 256). :class:`BatchedMLP` stacks their parameters so
that one batched matmul per layer serves all members, and :func:`fit_batched` trains them at
once, equal to ``k`` separate runs of :func:`labkit.train.fit`.

This is the speed path of labkit and the only module that calls private PyTorch operators
(``torch._fused_adam_``, ``torch._foreach_add_``, ``torch.ops.aten.threshold_backward``). Each
has a public fallback, chosen with ``private_ops=False`` (the fused Adam also falls back by itself
where torch lacks it), and the tests check that both paths make the same updates.

:class:`BatchedMLP` draws its members' initial weights itself, as one ``(k, in, out)`` tensor per
layer from ``seed`` (same distribution as ``nn.Linear``); member ``i`` is therefore not
``MLP(..., seed=...)`` of any seed, but the same seed always gives the same ensemble.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .models import MLP, check_dims
from .utils import (
    as_features,
    as_labels,
    check_int,
    device_of,
    make_generator,
    progress,
)

__all__ = ["BatchedMLP", "BatchedFitResult", "fit_batched", "predict_proba_batched"]


class BatchedMLP(nn.Module):
    """``k`` independent MLPs with stacked parameters, evaluated with one batched matmul per layer.

    Member ``i`` is the network ``in_features -> hidden... -> n_classes`` whose layer ``l`` has
    weight ``weights[l][i]`` of shape ``(in, out)`` and bias ``biases[l][i]`` of shape ``(out,)``;
    members share no parameter. This is what shadow-model attacks need: many identical small
    models, each trained on its own data (Shokri et al. 2017; Carlini et al. 2022 train up to
    256 shadows). On a CPU or GPU one ``baddbmm`` over ``k`` members is much faster than ``k``
    small matmuls, because the per-call overhead is paid once.

    Args:
        k: number of members.
        in_features: input dimension d.
        n_classes: number of classes C.
        hidden: widths of the hidden layers (as :class:`MLP`).
        activation: ``"relu"`` or ``"tanh"``.
        seed: seed or generator for the initialisation. Each member is initialised like
            ``nn.Linear``: weights and biases uniform in ``(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Attributes:
        weights: ``nn.ParameterList`` of tensors ``(k, in, out)``.
        biases: ``nn.ParameterList`` of tensors ``(k, out)``.
        k, input_shape, n_classes, hidden, activation.
    """

    def __init__(
        self,
        k: int,
        in_features: int,
        n_classes: int,
        *,
        hidden: Sequence[int] = (128,),
        activation: str = "relu",
        seed: int | torch.Generator | None = 0,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        check_int("k", k, minimum=1)
        check_dims(in_features=in_features, n_classes=n_classes)
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {hidden}")
        gen = make_generator(seed)
        widths = (in_features, *hidden, n_classes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            bound = 1.0 / fan_in**0.5
            w = (torch.rand(k, fan_in, fan_out, generator=gen) * 2 - 1) * bound  # (k, in, out)
            b = (torch.rand(k, fan_out, generator=gen) * 2 - 1) * bound  # (k, out)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.k = k
        self.input_shape = (in_features,)
        self.n_classes = n_classes
        self.hidden = hidden
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every member.

        Args:
            x: ``(k, B, d)`` (member i sees ``x[i]``) or ``(B, d)`` (every member sees the same batch).

        Returns:
            logits ``(k, B, C)``.
        """
        d = self.input_shape[0]
        if x.dim() == 2 and x.shape[1] == d:
            # shared inputs: one (B, d) @ (d, k*h1) GEMM instead of k copies of x
            w0 = self.weights[0]
            h = (x @ w0.transpose(0, 1).reshape(d, -1)).view(x.shape[0], self.k, -1).transpose(0, 1)
            h = h + self.biases[0].unsqueeze(1)  # (k, B, h1)
        elif x.dim() == 3 and x.shape[0] == self.k and x.shape[2] == d:
            h = torch.baddbmm(self.biases[0].unsqueeze(1), x, self.weights[0])  # (k, B, h1)
        else:
            raise ValueError(f"x must have shape ({self.k}, B, {d}) or (B, {d}), got {tuple(x.shape)}")
        act = torch.relu if self.activation == "relu" else torch.tanh
        for w, b in zip(self.weights[1:], self.biases[1:]):
            h = torch.baddbmm(b.unsqueeze(1), act(h), w)  # (k, B, out)
        return h  # (k, B, C)

    def member(self, i: int) -> MLP:
        """Member ``i`` as a stand-alone :class:`MLP` with a copy of its weights (same device)."""
        if not isinstance(i, int) or not -self.k <= i < self.k:
            raise ValueError(f"member index must be an int in [0, {self.k - 1}], got {i!r}")
        model = MLP(self.input_shape[0], self.n_classes, hidden=self.hidden, activation=self.activation, seed=0)  # weights overwritten below
        model.to(device=self.weights[0].device, dtype=self.weights[0].dtype)
        linears = [m for m in model.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases):
                lin.weight.copy_(w[i].T)  # nn.Linear stores (out, in)
                lin.bias.copy_(b[i])
        model.train(self.training)
        return model

    @classmethod
    def from_models(cls, models: Sequence[MLP]) -> "BatchedMLP":
        """Stack identical :class:`MLP` s (same widths and activation, no dropout) into one ensemble."""
        models = list(models)
        if not models:
            raise ValueError("from_models needs a non-empty list of MLPs, got an empty list")
        specs = [_mlp_spec(m) for m in models]
        if any(s != specs[0] for s in specs):
            raise ValueError(f"all models must have the same architecture, got {sorted(set(specs))}")
        in_features, hidden, n_classes, activation = specs[0]
        out = cls(len(models), in_features, n_classes, hidden=hidden, activation=activation, seed=0)
        out.to(next(models[0].parameters()).device)
        with torch.no_grad():
            for i, m in enumerate(models):
                linears = [mod for mod in m.net if isinstance(mod, nn.Linear)]
                for lin, w, b in zip(linears, out.weights, out.biases):
                    w[i].copy_(lin.weight.T)
                    b[i].copy_(lin.bias)
        return out

    def extra_repr(self) -> str:
        widths = " -> ".join(str(w) for w in (self.input_shape[0], *self.hidden, self.n_classes))
        return f"k={self.k}, {widths}, activation={self.activation}"


def _mlp_spec(m: nn.Module) -> tuple:
    """(in_features, hidden, n_classes, activation) of an MLP; ValueError for anything else."""
    if not isinstance(m, MLP):
        raise ValueError(f"from_models expects labkit.models.MLP instances, got {type(m).__name__}")
    if any(isinstance(mod, nn.Dropout) for mod in m.net):
        raise ValueError("from_models does not support MLPs with dropout")
    linears = [mod for mod in m.net if isinstance(mod, nn.Linear)]
    activation = "tanh" if any(isinstance(mod, nn.Tanh) for mod in m.net) else "relu"
    hidden = tuple(lin.out_features for lin in linears[:-1])
    return (linears[0].in_features, hidden, linears[-1].out_features, activation)


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
    private_ops: bool = True,
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
        model: a :class:`labkit.ensemble.BatchedMLP` (anything mapping ``(k, B, d)`` to ``(k, B, C)``
            with attributes ``k`` and ``n_classes``).
        x: float inputs ``(k, n, d)``, member ``i`` trains on ``x[i]``; or ``(n, d)``, shared by all.
        y: int64 labels ``(k, n)``, or ``(n,)`` when shared.
        epochs, batch_size, lr: the usual (Adam, betas (0.9, 0.999), eps 1e-8).
        weight_decay: L2 penalty coefficient, applied by Adam as in :func:`fit`.
        seed: seed or generator for the shuffling.
        shuffle: False keeps the given order (every epoch the same batches).
        private_ops: use PyTorch's private fused Adam and ReLU-backward kernels where they
            exist (faster); False takes the public path (``torch.optim.Adam(foreach=True)``,
            ``torch.where``), which makes the same updates.
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
    opt = _StackedAdam(params, lr=lr, weight_decay=weight_decay, private_ops=private_ops)
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
                per_member = _mlp_loss_and_grad(model, xb, yb, private_ops=private_ops)  # (k,), grads written
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
        model: a :class:`labkit.ensemble.BatchedMLP`.
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
    return type(model) is BatchedMLP and all(p.requires_grad for p in model.parameters())


def _forward_keeping_activations(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The batched MLP's forward pass, keeping what a hand-written backward needs: the inputs
    ``a_0 .. a_{L-1}`` of every layer, each ``(k, B, width)``, and the logits ``(k, B, C)``."""
    weights, biases = list(model.weights), list(model.biases)
    relu = model.activation == "relu"
    acts = [x]
    for w, b in zip(weights[:-1], biases[:-1]):
        z = torch.baddbmm(b.unsqueeze(1), acts[-1], w)
        acts.append(z.clamp_min_(0) if relu else z.tanh_())
    return acts, torch.baddbmm(biases[-1].unsqueeze(1), acts[-1], weights[-1])


@torch.no_grad()
def _mlp_loss_and_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, private_ops: bool = True) -> torch.Tensor:
    """Forward and backward of a BatchedMLP by hand; returns each member's mean loss ``(k,)``.

    The loss of member i is its mean cross-entropy over the batch; the gradient of the SUM of
    the members' losses is written into ``.grad`` of the stacked parameters. With
    ``a_0 = x``, ``z_l = a_{l-1} W_l + b_l``, ``a_l = act(z_l)`` and the softmax ``p`` of
    ``z_L``: ``dL/dz_L = (p - onehot(y)) / B``, ``dW_l = a_{l-1}^T g_l``, ``db_l = sum_B g_l``,
    ``g_{l-1} = (g_l W_l^T) * act'(z_{l-1})``.
    """
    weights, biases = list(model.weights), list(model.biases)
    relu = model.activation == "relu"
    acts, z = _forward_keeping_activations(model, x)  # z: (k, B, C) logits
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
            if relu and private_ops:
                g = torch.ops.aten.threshold_backward(g, a, 0)  # g where a > 0, else 0 (one kernel)
            elif relu:
                g = torch.where(a > 0, g, 0.0)
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
    ensemble's update takes. Elsewhere, or with ``private_ops=False``, it is the public
    ``torch.optim.Adam(foreach=True)``.
    """

    def __init__(self, params: list[torch.Tensor], *, lr: float, weight_decay: float, private_ops: bool = True) -> None:
        self.params, self.lr, self.weight_decay = params, float(lr), float(weight_decay)
        devices = {p.device for p in params}
        fused = getattr(torch, "_fused_adam_", None) if private_ops else None
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
