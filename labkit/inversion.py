"""Model inversion: MI-FACE (Fredrikson, Jha and Ristenpart 2015, Algorithm 1).

Given a classifier and a class ``label``, MI-FACE looks for the input that the model is most
confident belongs to ``label``, by gradient descent on the cost

    c(x) = 1 - f~_label(x) + AUXTERM(x),

starting from the all-zero input and post-processing every step with PROCESS. When each class is
one person (face recognition) or one digit, the minimiser shows what the model has retained about
that class's training examples.

Access model: white box. The attack needs the gradient of ``f~_label`` with respect to the input,
so ``f_target`` is a *differentiable* function returning class probabilities, as in the paper's
setting where the attacker holds the model (or, in its black-box variant, estimates gradients
numerically from confidence values; we do not implement that variant). An ``nn.Module`` that
returns logits (every labkit model) is accepted and turned into probabilities with a softmax.

PROCESS and AUXTERM are pluggable. PROCESS defaults to the identity; :func:`clip_to_range` keeps
pixels in the data range and :func:`gaussian_smoothing` is a simple denoising step (the paper uses a
denoising autoencoder and sharpening). AUXTERM defaults to zero; :func:`l2_penalty` and
:func:`total_variation` are image priors.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .utils import as_features, as_images, as_labels, device_of, outputs_of, progress

__all__ = [
    "ProbabilityFn",
    "InversionResult",
    "ReconstructionScore",
    "softmax_probabilities",
    "mi_face",
    "invert_classes",
    "clip_to_range",
    "gaussian_smoothing",
    "compose",
    "l2_penalty",
    "total_variation",
    "class_means",
    "reconstruction_score",
]

ProbabilityFn = Callable[[torch.Tensor], torch.Tensor]
"""A differentiable map from inputs ``(N, *input_shape)`` to probabilities ``(N, C)``."""

Process = Callable[[torch.Tensor], torch.Tensor]
"""PROCESS: maps a batch ``(1, *input_shape)`` to a batch of the same shape."""

AuxTerm = Callable[[torch.Tensor], torch.Tensor]
"""AUXTERM: maps a batch ``(1, *input_shape)`` to a differentiable scalar tensor."""


@dataclass
class InversionResult:
    """What :func:`mi_face` returns.

    Attributes:
        x: the arg-min iterate, float tensor of shape ``input_shape`` (no batch dimension).
        cost: its cost ``c(x)``, the minimum over all iterates.
        label: the class that was inverted.
        costs: ``c(x_0), c(x_1), ..., c(x_n)`` for every iterate computed (``n`` steps taken).
        best_step: the index ``i`` of the arg-min iterate in ``costs``.
        stop: why the loop ended: ``"gamma"`` (cost reached gamma), ``"beta"`` (no lower than the highest
            over the last beta costs) or ``"alpha"`` (alpha steps done).
    """

    x: torch.Tensor
    cost: float
    label: int
    costs: list[float] = field(default_factory=list)
    best_step: int = 0
    stop: str = "alpha"

    @property
    def n_steps(self) -> int:
        """Number of gradient steps taken (iterates ``x_1 .. x_n``)."""
        return len(self.costs) - 1


def softmax_probabilities(model: nn.Module, *, temperature: float = 1.0) -> ProbabilityFn:
    """Wrap a logit-returning model as the differentiable probability function ``f~``.

    Args:
        model: returns logits ``(N, C)`` (every labkit model does). It is put in eval mode.
        temperature: divides the logits before the softmax (1: the model's own probabilities).

    Returns:
        A function mapping ``(N, *input_shape)`` to probabilities ``(N, C)``, with gradients.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    model.eval()

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x) / temperature, dim=1)  # (N, C)

    f.input_shape = getattr(model, "input_shape", None)  # type: ignore[attr-defined]
    f.device = device_of(model)  # type: ignore[attr-defined]
    return f


def _as_probability_fn(f_target: nn.Module | ProbabilityFn) -> ProbabilityFn:
    if isinstance(f_target, nn.Module):
        return softmax_probabilities(f_target)
    if not callable(f_target):
        raise ValueError(f"f_target must be an nn.Module returning logits or a callable returning probabilities, got {type(f_target).__name__}")
    return f_target


def mi_face(
    f_target: nn.Module | ProbabilityFn,
    label: int,
    *,
    alpha: int = 5000,
    beta: int = 100,
    gamma: float = 0.01,
    lam: float = 0.1,
    input_shape: Sequence[int] | None = None,
    process: Process | None = None,
    auxterm: AuxTerm | None = None,
    device: torch.device | str | None = None,
) -> InversionResult:
    """Invert one class of a classifier with MI-FACE.

    Runs, with ``c(x) = 1 - f~_label(x) + AUXTERM(x)`` and ``x_0 = 0``, for ``i = 1 .. alpha``:
    ``x_i = PROCESS(x_{i-1} - lam * grad c(x_{i-1}))``, then stops if
    ``c(x_i) >= max(c(x_{i-1}), ..., c(x_{i-beta}))`` (fewer terms while ``i < beta``) or if
    ``c(x_i) <= gamma``. Returns the iterate of least cost among ``x_0 .. x_n``.

    Args:
        f_target: the white-box model: an ``nn.Module`` returning logits (a softmax is applied) or
            a differentiable callable mapping ``(N, *input_shape)`` to probabilities ``(N, C)``.
        label: the class to invert, in ``[0, C)``.
        alpha: maximum number of gradient steps (>= 1).
        beta: look-back window of the beta rule: stop when the cost is no lower than the highest of
            the last ``beta`` costs (>= 1).
        gamma: stop once the cost is at most gamma (``gamma = 0.01`` means confidence >= 0.99
            when AUXTERM is zero).
        lam: the step size lambda (> 0).
        input_shape: shape of one input; taken from ``f_target.input_shape`` when omitted.
        process: PROCESS applied after every step (default: identity).
        auxterm: AUXTERM added to the cost (default: zero).
        device: where ``x`` lives; by default the model's device (CPU for a plain callable).

    Returns:
        :class:`InversionResult` with the arg-min ``x`` of shape ``input_shape``, its cost, the
        cost history and the stopping reason.

    Reference: Fredrikson, Jha and Ristenpart (2015), "Model inversion attacks that exploit
    confidence information and basic countermeasures", Algorithm 1 (MI-FACE).
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    f = _as_probability_fn(f_target)
    if isinstance(alpha, bool) or not isinstance(alpha, int) or alpha < 1:
        raise ValueError(f"alpha (the step cap) must be an int >= 1, got {alpha!r}")
    if isinstance(beta, bool) or not isinstance(beta, int) or beta < 1:
        raise ValueError(f"beta (the look-back window) must be an int >= 1, got {beta!r}")
    if not (isinstance(lam, (int, float)) and lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lam (the step size lambda) must be a finite number > 0, got {lam!r}")
    if not isinstance(gamma, (int, float)) or math.isnan(gamma):
        raise ValueError(f"gamma must be a number, got {gamma!r}")
    shape = input_shape if input_shape is not None else getattr(f_target, "input_shape", None) or getattr(f, "input_shape", None)
    if shape is None:
        raise ValueError("input_shape is required when f_target has no .input_shape attribute")
    shape = tuple(int(s) for s in shape)
    if device is None:
        device = device_of(f_target) if isinstance(f_target, nn.Module) else getattr(f, "device", torch.device("cpu"))
    process = process if process is not None else (lambda z: z)

    def cost_of(x: torch.Tensor) -> torch.Tensor:
        probs = f(x)  # (1, C)
        if probs.dim() != 2 or probs.shape[0] != 1:
            raise ValueError(f"f_target must return probabilities of shape (N, C); for one input it returned {tuple(probs.shape)}")
        c = 1.0 - probs[0, label]
        if auxterm is not None:
            c = c + auxterm(x).reshape(())
        return c

    x = torch.zeros(1, *shape, device=device)  # x_0 = 0, (1, *input_shape)
    with torch.no_grad():
        n_classes = f(x).shape[1]
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < n_classes:
        raise ValueError(f"label must be an int in [0, {n_classes - 1}], got {label!r}")
    label = int(label)

    x.requires_grad_(True)
    c = cost_of(x)
    costs = [float(c.detach())]
    best_x, best_step, stop = x.detach().clone(), 0, "alpha"
    for i in range(1, alpha + 1):
        (grad,) = torch.autograd.grad(c, x)
        with torch.no_grad():
            x_new = process(x - lam * grad)  # line 5
        if x_new.shape != x.shape:
            raise ValueError(f"process must keep the shape {tuple(x.shape)}, got {tuple(x_new.shape)}")
        x = x_new.detach().requires_grad_(True)
        c = cost_of(x)
        c_i = float(c.detach())
        costs.append(c_i)
        if c_i < costs[best_step]:
            best_x, best_step = x.detach().clone(), i
        if c_i >= max(costs[max(0, i - beta) : i]):  # line 6: no lower than the worst cost in the window
            stop = "beta"
            break
        if c_i <= gamma:  # line 8
            stop = "gamma"
            break
    return InversionResult(x=best_x[0], cost=costs[best_step], label=int(label), costs=costs, best_step=best_step, stop=stop)
    ### END SOLUTION


def invert_classes(f_target: nn.Module | ProbabilityFn, labels: Sequence[int] | None = None, **kwargs) -> list[InversionResult]:
    """Run :func:`mi_face` for each class in ``labels`` (all classes of the model by default).

    Args:
        f_target: as in :func:`mi_face`.
        labels: classes to invert; ``None`` means ``range(f_target.n_classes)``.
        **kwargs: keyword options of :func:`mi_face` (alpha, beta, gamma, lam, process, ...).

    Returns:
        One :class:`InversionResult` per label, in order.
    """
    if labels is None:
        n = getattr(f_target, "n_classes", None)
        if n is None:
            raise ValueError("labels is required when f_target has no .n_classes attribute")
        labels = range(n)
    return [mi_face(f_target, int(k), **kwargs) for k in progress(list(labels), desc="MI-FACE")]


# --------------------------------------------------------------------------------------------
# PROCESS and AUXTERM building blocks


def clip_to_range(low: float = 0.0, high: float = 1.0) -> Process:
    """PROCESS that clips every feature to ``[low, high]`` (the data range; digits: [0, 1])."""
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")

    def process(x: torch.Tensor) -> torch.Tensor:
        return x.clamp(low, high)

    return process


def gaussian_smoothing(sigma: float = 0.5, *, image_shape: Sequence[int] | None = None, low: float | None = 0.0, high: float | None = 1.0) -> Process:
    """PROCESS that blurs each image with a Gaussian of width ``sigma`` pixels, then clips.

    A simple denoising step: it removes the high-frequency patterns that gradient steps on a
    classifier tend to create (the paper's PROCESS-DAE uses a denoising autoencoder instead).

    Args:
        sigma: standard deviation in pixels (> 0); the kernel spans ``2 * ceil(2 sigma) + 1``.
        image_shape: ``(C, H, W)`` of one input; inferred for 4-D inputs and flat square ones.
        low, high: clip range applied after the blur (``None`` skips that side).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    radius = max(1, math.ceil(2 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k1 = torch.exp(-0.5 * (t / sigma) ** 2)
    k1 = k1 / k1.sum()  # (2r+1,)

    def process(x: torch.Tensor) -> torch.Tensor:
        img, shp = as_images(x, image_shape)  # (N, C, H, W)
        c = shp[0]
        k = k1.to(x.device, x.dtype)
        kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
        ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
        pad = torch.nn.functional.pad(img, (radius, radius, 0, 0), mode="replicate")
        img = torch.nn.functional.conv2d(pad, kx, groups=c)
        pad = torch.nn.functional.pad(img, (0, 0, radius, radius), mode="replicate")
        img = torch.nn.functional.conv2d(pad, ky, groups=c)
        out = img.reshape(x.shape)
        if low is not None or high is not None:
            out = out.clamp(min=low, max=high)
        return out

    return process


def compose(*processes: Process) -> Process:
    """PROCESS that applies ``processes`` left to right."""
    if not processes:
        raise ValueError("compose needs at least one process")

    def process(x: torch.Tensor) -> torch.Tensor:
        for p in processes:
            x = p(x)
        return x

    return process


def l2_penalty(weight: float) -> AuxTerm:
    """AUXTERM ``weight * ||x||^2 / d`` (mean squared value): prefers dark, sparse images."""
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")

    def aux(x: torch.Tensor) -> torch.Tensor:
        return weight * x.pow(2).mean()

    return aux


def total_variation(weight: float, *, image_shape: Sequence[int] | None = None) -> AuxTerm:
    """AUXTERM ``weight *`` mean absolute difference between neighbouring pixels: prefers smooth images."""
    if weight < 0:
        raise ValueError(f"weight must be >= 0, got {weight}")

    def aux(x: torch.Tensor) -> torch.Tensor:
        img, _ = as_images(x, image_shape)  # (N, C, H, W)
        dh = (img[..., 1:, :] - img[..., :-1, :]).abs().mean()
        dw = (img[..., :, 1:] - img[..., :, :-1]).abs().mean()
        return weight * (dh + dw)

    return aux


# --------------------------------------------------------------------------------------------
# Measuring a reconstruction


@dataclass
class ReconstructionScore:
    """How well inversions reconstruct their classes.

    Attributes:
        labels: the inverted classes, int64 ``(K,)``.
        confidence: ``f~_label(x)`` of each inversion, float ``(K,)``.
        own_distance: Euclidean distance from each inversion to its own class mean, ``(K,)``.
        other_distance: distance to the nearest *other* class mean, ``(K,)``.
        nearest_other: which other class that is, int64 ``(K,)``.
        nearer_own: ``own_distance < other_distance``, bool ``(K,)``.
    """

    labels: torch.Tensor
    confidence: torch.Tensor
    own_distance: torch.Tensor
    other_distance: torch.Tensor
    nearest_other: torch.Tensor
    nearer_own: torch.Tensor

    @property
    def n_nearer_own(self) -> int:
        """How many inversions lie nearer their own class mean than any other class mean."""
        return int(self.nearer_own.sum())

    @property
    def min_confidence(self) -> float:
        """The smallest target-class confidence among the inversions."""
        return float(self.confidence.min())

    def rows(self) -> list[dict[str, object]]:
        """One dict per inversion, for :func:`labkit.plots.format_table`."""
        return [
            {
                "class": int(k),
                "confidence": float(c),
                "dist. own mean": float(d0),
                "dist. nearest other": float(d1),
                "nearest other": int(o),
                "nearer own": bool(n),
            }
            for k, c, d0, d1, o, n in zip(self.labels, self.confidence, self.own_distance, self.other_distance, self.nearest_other, self.nearer_own)
        ]


def class_means(x, y, *, n_classes: int | None = None) -> torch.Tensor:
    """The mean input of every class.

    Args:
        x: inputs ``(N, *input_shape)``.
        y: labels ``(N,)``.
        n_classes: number of classes C (default ``max(y) + 1``); every class needs an example.

    Returns:
        float tensor ``(C, *input_shape)``.
    """
    x = as_features(x, name="x")
    y = as_labels(y, name="y", n_classes=n_classes, n=x.shape[0]).to(x.device)
    c = n_classes if n_classes is not None else int(y.max()) + 1
    counts = torch.bincount(y, minlength=c)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one example; classes {(counts == 0).nonzero().flatten().tolist()} have none")
    flat = x.reshape(x.shape[0], -1)
    sums = torch.zeros(c, flat.shape[1], dtype=flat.dtype, device=x.device).index_add_(0, y, flat)
    return (sums / counts[:, None].to(flat.dtype)).reshape(c, *x.shape[1:])


@torch.no_grad()
def reconstruction_score(x_inv, labels, *, f_target: nn.Module | ProbabilityFn, means: torch.Tensor) -> ReconstructionScore:
    """Score inversions: target-class confidence and distance to the class means.

    An inversion "reconstructs" its class when the model is confident about it *and* it lies
    nearer its own class's mean training input than any other class's mean (a rough, label-free
    check that it looks like the class and is not an adversarial pattern).

    Args:
        x_inv: inversions ``(K, *input_shape)``.
        labels: the class each one inverts, ``(K,)``.
        f_target: the model, as in :func:`mi_face`.
        means: class means ``(C, *input_shape)``, e.g. from :func:`class_means` on the training data.

    Returns:
        :class:`ReconstructionScore`.
    """
    x_inv = as_features(x_inv, name="x_inv")
    means = as_features(means, name="means", shape=tuple(x_inv.shape[1:]))
    labels = as_labels(labels, name="labels", n_classes=means.shape[0], n=x_inv.shape[0])
    f = f_target if isinstance(f_target, nn.Module) else _as_probability_fn(f_target)
    probs = outputs_of(f, x_inv.to(getattr(f, "device", x_inv.device)), name="f_target").cpu()  # (K, C)
    conf = probs[torch.arange(len(labels)), labels]
    d = torch.cdist(x_inv.reshape(len(x_inv), -1).cpu().double(), means.reshape(len(means), -1).cpu().double())  # (K, C)
    own = d[torch.arange(len(labels)), labels]
    other = d.clone()
    other[torch.arange(len(labels)), labels] = float("inf")
    other_d, other_k = other.min(dim=1)
    return ReconstructionScore(labels=labels, confidence=conf.float(), own_distance=own.float(), other_distance=other_d.float(), nearest_other=other_k, nearer_own=own < other_d)
