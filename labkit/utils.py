"""Shared helpers: device choice, explicit generators, progress bars and input checks.

labkit never seeds global random state. Every random function takes a
``generator: torch.Generator | None`` or a ``seed: int``; :func:`make_generator`
turns either into a generator. :func:`seed_everything` exists for notebooks only.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torch import nn

__all__ = [
    "get_device",
    "seed_everything",
    "make_generator",
    "spawn_seed",
    "progress",
    "device_of",
    "as_features",
    "as_labels",
    "as_probabilities",
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


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch global generators (for notebooks, never used inside labkit)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_generator(
    seed: int | torch.Generator | None = None, *, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Return a ``torch.Generator``: the one given, or a new one seeded with ``seed``.

    ``None`` gives a generator seeded from the operating system, so results vary run to run.
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


def spawn_seed(generator: torch.Generator) -> int:
    """Draw a fresh 62-bit seed from ``generator`` (to derive independent child generators)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


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


def as_probabilities(p, *, name: str = "probs", atol: float = 1e-4) -> torch.Tensor:
    """Check that ``p`` is a batch of probability vectors ``(N, C)`` whose rows sum to 1."""
    if not isinstance(p, torch.Tensor):
        p = torch.as_tensor(np.asarray(p))
    if p.dim() != 2 or not p.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (N, C), got {p.dtype} of shape {tuple(p.shape)}")
    if (p < -atol).any() or (p > 1 + atol).any():
        raise ValueError(f"{name} must hold probabilities in [0, 1]")
    if not torch.allclose(p.sum(dim=1), torch.ones(p.shape[0], dtype=p.dtype, device=p.device), atol=atol):
        raise ValueError(f"each row of {name} must sum to 1")
    return p
