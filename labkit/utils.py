"""Core helpers: device choice, randomness, progress bars and input checks.

Randomness has one spelling in labkit: every random function takes a keyword-only
``seed: int | torch.Generator | None = 0``. An int gives the same output every time (the default
0 makes every run reproducible); a ``torch.Generator`` is used, and advanced, as it is (to chain
draws); ``None`` asks the operating system for a fresh seed. labkit never reads, seeds or
advances torch's, NumPy's or Python's global random state: :func:`make_generator` turns a
``seed`` into a generator, and :func:`init_from_seed` initialises new layers from one.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

__all__ = [
    "get_device",
    "make_generator",
    "spawn_seed",
    "init_from_seed",
    "reset_parameters_",
    "progress",
    "device_of",
    "as_features",
    "as_labels",
    "as_probabilities",
    "as_binary",
    "check_int",
    "image_shape",
    "as_images",
    "outputs_of",
    "labels_of",
]

T = TypeVar("T")


def get_device() -> torch.device:
    """Pick the fastest available device: CUDA, then Apple MPS, then the CPU.

    The environment variable ``LABKIT_DEVICE`` (for example ``cpu`` or ``cuda:1``)
    overrides the choice. Call this at the top of a notebook only; labkit functions
    take their device from the model or the input they are given.
    """
    override = os.environ.get("LABKIT_DEVICE", "").strip()
    if override:
        try:
            return torch.device(override)
        except RuntimeError as err:
            raise ValueError(f"LABKIT_DEVICE must name a torch device such as 'cpu' or 'cuda', got {override!r}") from err
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def make_generator(seed: int | torch.Generator | None, *, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a ``torch.Generator``: the one given, or a new one seeded with ``seed``.

    ``None`` gives a generator seeded from the operating system, so results vary run to run;
    torch's global generator is never used.
    """
    if isinstance(seed, torch.Generator):
        return seed
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"seed must be an int, a torch.Generator or None, got {type(seed).__name__}")
        gen.manual_seed(int(seed))
    return gen


def spawn_seed(parent: torch.Generator) -> int:
    """Draw a fresh 62-bit seed from the generator ``parent`` (to derive independent child generators)."""
    return int(torch.randint(0, 2**62, (1,), generator=parent).item())


def _int_seed(seed: int | torch.Generator | None) -> int:
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    return spawn_seed(make_generator(seed))


@contextlib.contextmanager
def init_from_seed(seed: int | torch.Generator | None, *, device: torch.device | str | None = None) -> Iterator[None]:
    """Within the block, torch's own random draws (layers created or reset with PyTorch's
    initialisation schemes, dropout masks) come from ``seed``, and the caller's random state is
    left as it was.

    The block runs on forked copies of torch's CPU generator (and of ``device``'s, when it is a
    CUDA device), seeded with ``seed`` itself when it is an int (so ``MLP(..., seed=3)`` has the
    weights that ``torch.manual_seed(3)`` would give), else with a seed drawn from the generator or
    the OS. Every forked state is restored on exit, so nothing outside the block sees a draw.
    """
    value = _int_seed(seed)
    device = torch.device(device) if device is not None else None
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(value)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(value)
        yield


def reset_parameters_(module: nn.Module, *, seed: int | torch.Generator | None = 0) -> nn.Module:
    """Re-draw, in place, the parameters of every layer of ``module`` that has ``reset_parameters``
    (PyTorch's default initialisation), from ``seed``, whatever device the module is on.

    The layers are reset on a CPU copy inside :func:`init_from_seed` and the values copied back,
    so the same seed gives the same weights on a CPU and on a GPU.
    """
    cpu = copy.deepcopy(module).cpu()
    with init_from_seed(seed), torch.no_grad():
        for layer in cpu.modules():
            if hasattr(layer, "reset_parameters") and list(layer.parameters(recurse=False)):
                layer.reset_parameters()
        for dst, src in zip(module.parameters(), cpu.parameters()):
            dst.copy_(src)
    return module


def progress(iterable: Iterable[T], *, desc: str | None = None, total: int | None = None, leave: bool = False) -> Iterable[T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar unless ``LABKIT_PROGRESS=0``.

    The bar appears only once the loop has run for half a second, so that a hundred quick fits (one
    attack model per class, say) do not flood a notebook with bars; long work still shows one.
    """
    if os.environ.get("LABKIT_PROGRESS", "1") in {"0", "false", "False", "no"}:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=leave, delay=0.5)


def device_of(obj: nn.Module | torch.Tensor) -> torch.device:
    """The device of a tensor, or of a module's first parameter or buffer (CPU if it has none)."""
    if isinstance(obj, torch.Tensor):
        return obj.device
    for t in obj.parameters():
        return t.device
    for t in obj.buffers():
        return t.device
    return torch.device("cpu")


def _shape_str(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"


def as_features(x, *, name: str = "x", shape: Sequence[int] | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Check and convert a batch of inputs to a floating tensor of shape ``(N, *shape)``.

    Args:
        x: array-like or tensor, a batch of ``N`` inputs.
        name: the argument's name, used in error messages.
        shape: the expected shape of one input, e.g. ``(64,)`` or ``(1, 8, 8)``; ``None`` accepts
            any shape with at least one dimension after the batch.
        dtype: floating dtype to convert to.

    Raises:
        ValueError: on a non-numeric input, a wrong shape, or NaN/inf entries.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}") from err
    if x.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if shape is not None:
        expected = (None, *shape)
        if tuple(x.shape[1:]) != tuple(shape) or x.dim() != len(expected):
            raise ValueError(f"{name} must have shape {_shape_str(expected)}, got {tuple(x.shape)}")
    elif x.dim() < 2:
        raise ValueError(f"{name} must be a batch with shape (N, ...) and at least 2 dimensions, got {tuple(x.shape)}")
    x = x.to(dtype)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return x


def as_labels(y, *, name: str = "y", n_classes: int | None = None, n: int | None = None) -> torch.Tensor:
    """Check and convert class labels to an ``int64`` tensor of shape ``(N,)``.

    Raises:
        ValueError: when ``y`` is not 1-D, holds non-integers, has the wrong length, or holds a
            label outside ``[0, n_classes)``.
    """
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(np.asarray(y))
    if y.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of class labels with shape (N,), got shape {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.equal(y, y.round()):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values")
    elif y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.to(torch.int64)
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} must have {n} labels (one per input), got {y.shape[0]}")
    if n_classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must hold labels in [0, {n_classes - 1}], got values in [{int(y.min())}, {int(y.max())}]")
    return y


def as_probabilities(p, *, name: str = "probs", min_classes: int = 1, normalized: bool = True, atol: float = 1e-4) -> torch.Tensor:
    """Check a batch of probability vectors: a float tensor ``(N, C)``, finite and non-negative.

    Args:
        p: array-like or tensor ``(N, C)``.
        name: the argument's name, used in error messages.
        min_classes: the fewest classes C accepted (2 for entropies and binary attacks).
        normalized: also require entries in ``[0, 1]`` and every row to sum to 1 (within
            ``atol``); False accepts unnormalised non-negative rows (for example rounded or
            top-k answers; :func:`labkit.metrics.normalized_entropy` renormalises them).
        atol: tolerance of the range and sum checks.

    Returns:
        ``p`` as a tensor (not copied, dtype unchanged).
    """
    if not isinstance(p, torch.Tensor):
        p = torch.as_tensor(np.asarray(p))
    if p.dim() != 2 or not p.is_floating_point() or p.shape[1] < min_classes:
        least = f" with C >= {min_classes}" if min_classes > 1 else ""
        raise ValueError(f"{name} must be a float tensor of shape (N, C){least}, got {p.dtype} of shape {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < -atol).any() or (normalized and (p > 1 + atol).any()):
        raise ValueError(f"{name} must hold finite, non-negative probabilities" + (" in [0, 1]" if normalized else ""))
    if normalized and not torch.allclose(p.sum(dim=1), torch.ones(p.shape[0], dtype=p.dtype, device=p.device), atol=atol):
        raise ValueError(f"each row of {name} must sum to 1")
    return p


def as_binary(v, *, name: str, n: int | None = None) -> torch.Tensor:
    """Check 0/1 or boolean flags (membership truth, decisions) and return a bool tensor ``(N,)``.

    Unlike ``tensor.bool()``, a 2 or a 0.5 is an error, not a True.
    """
    t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one flag per record), got shape {tuple(t.shape)}")
    if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name} must hold booleans or 0/1 values")
    if n is not None and t.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per record), got {t.shape[0]}")
    return t.to(torch.bool)


def check_int(name: str, value, *, minimum: int = 0) -> int:
    """``value`` if it is an int ``>= minimum`` (bools excluded); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(channels, height, width)`` of one input: an image shape as it is, a flat square ``(d,)`` as ``(1, sqrt d, sqrt d)``."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3 and min(shape) >= 1:
        return shape  # type: ignore[return-value]
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side >= 1 and side * side == shape[0]:
            return 1, side, side
        raise ValueError(f"a flat input_shape must hold a square number of pixels to be viewed as an image, got {shape}; pass an image shape (C, H, W)")
    raise ValueError(f"input_shape must be (d,) with d a square, or (channels, height, width), got {shape}")


def as_images(x: torch.Tensor, shape: Sequence[int] | None = None) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """View a batch as images ``(N, C, H, W)``: 4-D batches as they are, others reshaped to ``shape``
    (default: :func:`image_shape` of one input). Returns the view and the image shape."""
    if shape is None:
        if x.dim() == 4:
            return x, tuple(x.shape[1:])  # type: ignore[return-value]
        shape = (x[0].numel(),)  # flat (or oddly shaped) inputs: square images of one channel
    img = image_shape(shape)
    if math.prod(img) != x[0].numel():
        raise ValueError(f"image shape {img} must hold the {x[0].numel()} values of one input")
    return x.reshape(x.shape[0], *img), img


def outputs_of(f: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, name: str = "f") -> torch.Tensor:
    """Call a model or a prediction function on a batch, without gradients, and return a tensor.

    A ``nn.Module`` is taken to return logits: it gets ``x`` on its own device, in eval mode, and
    its softmax probabilities ``(N, C)`` come back. Any other callable (an
    :class:`~labkit.oracle.Oracle`, a function returning probabilities or labels) gets ``x`` as
    it is and its answer is returned as a tensor, unchanged. The answer stays on its device.
    """
    if not callable(f):
        raise ValueError(f"{name} must be an nn.Module or a callable mapping inputs (N, ...) to outputs, got {type(f).__name__}")
    with torch.no_grad():
        if isinstance(f, nn.Module):
            was_training = f.training
            f.eval()
            out = torch.softmax(f(x.to(device_of(f))).double(), dim=-1).float()
            f.train(was_training)
        else:
            out = f(x)
    out = out if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out))
    if out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(f"{name}(x) must give one output per input ({x.shape[0]}), got shape {tuple(out.shape)}")
    return out


def labels_of(f: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, name: str = "f") -> torch.Tensor:
    """Predicted labels ``(N,)`` (int64, on the CPU) of a model or a prediction function: the
    arg-max of probabilities or scores ``(N, C)``, labels ``(N,)`` as they are (see :func:`outputs_of`)."""
    out = outputs_of(f, x, name=name)
    if out.dim() == 2:
        out = out.argmax(dim=1)
    return as_labels(out.cpu(), name=f"{name}(x)", n=x.shape[0])

