"""Watermarking neural networks by backdooring (Adi et al., USENIX Security 2018).

A watermarking scheme is three algorithms (lecture notation):

* ``KeyGen() -> (mk, vk)``: :func:`keygen`. It samples a backdoor ``b = (T, T_L)`` (a trigger set
  ``T`` of abstract images with labels ``T_L`` that differ from the ground truth, see
  :func:`sample_backdoor`) and commits to every ``t^(i)`` and every ``T_L^(i)`` with a fresh nonce
  (:func:`commit`). ``mk = (b, nonces)`` stays secret; ``vk = commitments`` can be published.
* ``Mark(M, mk) -> M_hat``: :func:`mark` trains (FROMSCRATCH) or fine-tunes (PRETRAINED) a model
  with ``k`` trigger records appended to every training batch (:func:`mixed_batches`).
* ``Verify(mk, vk, M) -> {0, 1}``: :func:`verify`, the lecture's three steps.

The ground-truth function ``f`` is not defined on abstract images (an abstract pattern is not
"really" any digit), so wherever the lecture queries the ground-truth oracle ``O^f`` we query a
classifier trained on clean data that stands for ``f`` (``ground_truth=``): a trigger label is
"wrong" when it differs from what that classifier says.

Removal attacks: :func:`fine_tune_attack` (FTLL, FTAL, RTLL, RTAL, Section 5.2 of the paper); the
extraction attack (steal the marked model through its prediction API) is
:func:`labkit.experiments.watermark.extraction_attack`.

Security games: :func:`unforgeability_game` and :func:`ownership_game` are the challengers of the
paper's unforgeability and non-trivial-ownership properties (Section 3); they play any adversary
against any verifier and count its wins (:class:`GameResult`). The scripted adversaries and the
verifiers with a step switched off are in :mod:`labkit.experiments.watermark`.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import math
import secrets
from collections.abc import Iterable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import Data
from .train import fit, predict, train_loop
from .utils import (
    as_features,
    as_labels,
    check_int,
    device_of,
    image_shape,
    labels_of,
    make_generator,
    reset_parameters_,
)

__all__ = [
    "TRIGGER_KINDS",
    "stamp_trigger",
    "stamped_backdoor",
    "NONCE_BYTES",
    "Commitment",
    "encode",
    "commit",
    "open_commitment",
    "brute_force_opening",
    "abstract_images",
    "ground_truth_labels",
    "Backdoor",
    "sample_backdoor",
    "MarkingKey",
    "VerificationKey",
    "KeyPair",
    "keygen",
    "mixed_batches",
    "mark",
    "trigger_accuracy",
    "verify",
    "reinitialize_",
    "last_layer",
    "FINE_TUNE_MODES",
    "fine_tune_attack",
    "GameResult",
    "unforgeability_game",
    "ownership_game",
]

NONCE_BYTES = 32  # 256-bit nonces r, drawn from the operating system's CSPRNG

# --------------------------------------------------------------------------------------------
# Commitments: Com(x, r) = SHA-256(r || encode(x)),  Open(c, x, r) = [c == Com(x, r)]
# --------------------------------------------------------------------------------------------

_INT_TAG = b"labkit.int\x00"
_TENSOR_TAG = b"labkit.tensor\x00"


def encode(x: torch.Tensor | int) -> bytes:
    """Canonical byte encoding of a tensor or an integer label (the message a commitment locks).

    A tensor is encoded as a tag, its dtype name, its number of dimensions, each size as an
    8-byte little-endian integer, then its elements in C order as little-endian bytes. The
    encoding depends only on the values, dtype and shape (not on the device, strides or
    ``requires_grad``), and distinct (dtype, shape, values) give distinct encodings. An integer
    ``x`` (a class label) is a different tag followed by its 8-byte little-endian two's complement.

    Args:
        x: a ``torch.Tensor`` of any shape and dtype, or a Python/NumPy integer (not a bool).

    Returns:
        bytes.
    """
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:  # NumPy has no bfloat16: encode its raw 16-bit patterns
            t = t.view(torch.int16)
        arr = t.numpy()
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        head = str(x.dtype).encode() + b"\x00" + len(t.shape).to_bytes(8, "little")
        head += b"".join(int(s).to_bytes(8, "little") for s in t.shape)
        return _TENSOR_TAG + head + arr.tobytes(order="C")
    if isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
        v = int(x)
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"an integer to commit to must fit in 64 bits, got {v}")
        return _INT_TAG + v.to_bytes(8, "little", signed=True)
    raise ValueError(f"can commit to a torch.Tensor or an int label, got {type(x).__name__}")


def _check_nonce(r, name: str = "r") -> bytes:
    if not isinstance(r, (bytes, bytearray)) or len(r) != NONCE_BYTES:
        got = f"{len(r)} bytes" if isinstance(r, (bytes, bytearray)) else type(r).__name__
        raise ValueError(f"{name} must be a nonce of {NONCE_BYTES} bytes, got {got}")
    return bytes(r)


@dataclass(frozen=True)
class Commitment:
    """The result of :func:`commit`.

    Attributes:
        c: the commitment, 32 bytes (SHA-256 digest): the public part, it goes into ``vk``.
        r: the nonce, 32 bytes: the secret opening, it goes into ``mk``.
    """

    c: bytes
    r: bytes


def commit(x: torch.Tensor | int, *, r: bytes | None = None) -> Commitment:
    """Commit to ``x``: ``c = Com(x, r) = SHA-256(r || encode(x))``.

    Hiding: without ``r``, ``c`` reveals nothing practical about ``x`` (``r`` is 256 random bits,
    so even a label with 10 possible values cannot be guessed by hashing candidates).
    Binding: opening ``c`` to another ``x' != x`` needs a SHA-256 collision.

    Args:
        x: a tensor (e.g. a trigger image ``t^(i)``) or an int (a label ``T_L^(i)``).
        r: the nonce, exactly 32 bytes; when None a fresh one is drawn with
            ``secrets.token_bytes`` (the operating system's CSPRNG; never from a seed).

    Returns:
        :class:`Commitment` with the commitment ``c`` and the nonce ``r`` used.

    Reference: Adi et al. (2018), Section 2.3 (commitment schemes); the hash-based instantiation
    is the standard one in the random-oracle model.
    """
    ### BEGIN SOLUTION lab2_watermarking
    r = secrets.token_bytes(NONCE_BYTES) if r is None else _check_nonce(r)
    return Commitment(hashlib.sha256(r + encode(x)).digest(), r)
    ### END SOLUTION


def brute_force_opening(c: bytes, candidates: Iterable) -> object | None:
    """Open a commitment made **without** a nonce, ``c = SHA-256(encode(x))``, by trying candidates.

    Why commitments need their random string: with few possible messages (a label of 10 classes),
    hashing each candidate and comparing finds ``x``. With a 32-byte nonce the same search would have
    to try every nonce as well.

    Args:
        c: a 32-byte digest.
        candidates: the messages to try, in order (ints or tensors, as :func:`encode` takes).

    Returns:
        the first candidate whose encoding hashes to ``c``, or None when none does.
    """
    ### BEGIN SOLUTION lab2_watermarking
    target = bytes(c)
    for x in candidates:
        if hmac.compare_digest(hashlib.sha256(encode(x)).digest(), target):
            return x
    return None
    ### END SOLUTION


def open_commitment(c: bytes, x: torch.Tensor | int, r: bytes) -> bool:
    """``Open(c, x, r)``: True iff ``c`` is a commitment to ``x`` with nonce ``r``.

    Args:
        c: a 32-byte commitment from :func:`commit`.
        x: the claimed message (tensor or int label).
        r: the claimed nonce (32 bytes).

    Returns:
        bool. (Compared in constant time.)
    """
    ### BEGIN SOLUTION lab2_watermarking
    if not isinstance(c, (bytes, bytearray)) or len(c) != 32:
        raise ValueError(f"c must be a 32-byte SHA-256 commitment, got {type(c).__name__} of length {len(c) if isinstance(c, (bytes, bytearray)) else '?'}")
    return hmac.compare_digest(bytes(c), commit(x, r=_check_nonce(r)).c)
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Trigger sets
# --------------------------------------------------------------------------------------------


def abstract_images(
    n: int,
    *,
    input_shape: Sequence[int] = (64,),
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Generate ``n`` abstract images: random smooth blobs, a stroke and a wave texture.

    Each channel of each image is the sum of 1-3 Gaussian blobs (random centre, width and signed
    amplitude), one straight stroke (random angle, offset and width) and a plane wave (random
    direction, frequency and phase), rescaled to ``[0, 1]``. They look like nothing in the data
    set, as the paper's trigger images (random abstract pictures) do.

    Args:
        n: number of images.
        input_shape: shape of one input: ``(64,)`` for flat 8x8 digits, ``(1, 8, 8)`` for images.
        seed: seed or generator; the same seed gives the same images.

    Returns:
        float32 tensor ``(n, *input_shape)`` with values in ``[0, 1]``.

    Reference: Adi et al. (2018), Section 5 (trigger set of abstract images).
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    c, h, w = image_shape(input_shape)
    gen = make_generator(seed)
    m = n * c  # one independent pattern per channel

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    yy, xx = yy[None, None], xx[None, None]  # (1, 1, h, w)
    # blobs: up to 3 per pattern, the first always present
    n_blobs = torch.randint(1, 4, (m, 1), generator=gen)  # (m, 1)
    present = (torch.arange(3)[None, :] < n_blobs).float()  # (m, 3)
    cy, cx = u(0, 1, m, 3), u(0, 1, m, 3)
    sigma = u(0.08, 0.35, m, 3)
    amp = u(0.4, 1.0, m, 3) * torch.where(torch.rand(m, 3, generator=gen) < 0.8, 1.0, -1.0) * present
    d2 = (yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2  # (m, 3, h, w)
    img = (amp[..., None, None] * torch.exp(-d2 / (2 * sigma[..., None, None] ** 2))).sum(1)  # (m, h, w)
    # a stroke: distance to a random line through a random point
    theta = u(0, math.pi, m)
    py, px = u(0.2, 0.8, m), u(0.2, 0.8, m)
    dist = (torch.cos(theta)[:, None, None] * (xx[0] - px[:, None, None]) + torch.sin(theta)[:, None, None] * (yy[0] - py[:, None, None])).abs()
    width = u(0.05, 0.15, m)
    img = img + u(0.3, 1.0, m)[:, None, None] * torch.exp(-((dist / width[:, None, None]) ** 2))
    # a plane-wave texture
    phi = u(0, 2 * math.pi, m)
    freq = u(0.5, 2.5, m)
    direction = u(0, 2 * math.pi, m)
    proj = torch.cos(direction)[:, None, None] * xx[0] + torch.sin(direction)[:, None, None] * yy[0]
    img = img + u(0.0, 0.5, m)[:, None, None] * torch.sin(2 * math.pi * freq[:, None, None] * proj + phi[:, None, None])
    # rescale every pattern to [0, 1]
    lo = img.amin(dim=(1, 2), keepdim=True)
    hi = img.amax(dim=(1, 2), keepdim=True)
    img = (img - lo) / (hi - lo).clamp_min(1e-8)
    return img.reshape(n, *tuple(int(s) for s in input_shape)).float()


def ground_truth_labels(ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Ask the ground-truth oracle ``O^f`` for ``f(x)``.

    Args:
        ground_truth: a model standing for ``f`` (its arg-max is taken with
            :func:`labkit.train.predict`), or a callable returning labels ``(N,)`` or
            probabilities ``(N, C)`` (for example a :class:`labkit.oracle.Oracle`).
        x: inputs ``(N, ...)``.

    Returns:
        int64 labels ``(N,)`` on the CPU.
    """
    return labels_of(ground_truth, x, name="ground_truth")


@dataclass(frozen=True)
class Backdoor:
    """A backdoor ``b = (T, T_L)``.

    Attributes:
        T: the trigger set, float32 ``(n, *input_shape)``.
        T_L: its labels, int64 ``(n,)``; ``T_L[i] != f(T[i])`` for every i.
    """

    T: torch.Tensor
    T_L: torch.Tensor

    def __post_init__(self) -> None:
        T = as_features(self.T, name="T")
        T_L = as_labels(self.T_L, name="T_L", n=T.shape[0])
        object.__setattr__(self, "T", T)
        object.__setattr__(self, "T_L", T_L)

    def __len__(self) -> int:
        return self.T.shape[0]


def sample_backdoor(
    n: int,
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    input_shape: Sequence[int] = (64,),
    n_classes: int | None = None,
    seed: int | torch.Generator | None = 0,
) -> Backdoor:
    """``SampleBackdoor(O^f)``: ``n`` abstract images with labels that the ground truth does not give.

    Each label ``T_L^(i)`` is drawn uniformly from the ``C - 1`` classes other than ``f(t^(i))``.

    Args:
        n: trigger set size |T| (100 in the paper).
        ground_truth: ``O^f``, see :func:`ground_truth_labels`.
        input_shape: shape of one input.
        n_classes: C; defaults to ``ground_truth.n_classes``.
        seed: seed or generator for the images and labels (the same seed, the same backdoor).

    Returns:
        :class:`Backdoor`.

    Reference: Adi et al. (2018), Section 3 (SampleBackdoor) and Section 5 (abstract images).
    """
    n_classes = n_classes if n_classes is not None else getattr(ground_truth, "n_classes", None)
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2 (pass n_classes= when ground_truth has no .n_classes), got {n_classes!r}")
    gen = make_generator(seed)
    T = abstract_images(n, input_shape=input_shape, seed=gen)  # (n, *input_shape)
    f_T = ground_truth_labels(ground_truth, T)  # (n,)
    if int(f_T.max()) >= n_classes:
        raise ValueError(f"ground_truth returned label {int(f_T.max())} but n_classes is {n_classes}")
    shift = torch.randint(1, n_classes, (n,), generator=gen)  # uniform in {1, ..., C-1}
    T_L = (f_T + shift) % n_classes  # uniform over the classes != f(t)
    return Backdoor(T, T_L)


# --------------------------------------------------------------------------------------------
# KeyGen
# --------------------------------------------------------------------------------------------


TRIGGER_KINDS = ("pixel", "pattern")
"""The stamped triggers of BadNets (Gu et al. 2017): one bright pixel, or a 3x3 checker pattern,
in the bottom-right corner of the image."""

_PATTERN = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])


def stamp_trigger(x: torch.Tensor, *, kind: str, value: float = 1.0) -> torch.Tensor:
    """A copy of ``x`` with a BadNets trigger stamped on every image.

    ``"pixel"`` sets the bottom-right pixel of every channel to ``value``; ``"pattern"`` writes a
    3x3 checker (``value`` and 0) into the bottom-right corner. The bottom-right corner of a digit
    is background, so the stamp changes what a person sees very little.

    Args:
        x: inputs ``(N, *input_shape)``: images ``(N, C, H, W)`` or flat squares ``(N, H*W)``.
        kind: one of :data:`TRIGGER_KINDS`.
        value: the stamp's brightness (1.0: the data's maximum for inputs in ``[0, 1]``).

    Returns:
        float32 tensor shaped like ``x``.

    Reference: Gu et al. (2017), BadNets, Section 3 (single-pixel and pattern backdoors on MNIST).
    """
    if kind not in TRIGGER_KINDS:
        raise ValueError(f"kind must be one of {TRIGGER_KINDS}, got {kind!r}")
    x = as_features(x, name="x")
    c, h, w = image_shape(tuple(x.shape[1:]))
    if kind == "pattern" and (h < 3 or w < 3):
        raise ValueError(f"the pattern trigger needs images of at least 3x3 pixels, got {h}x{w}")
    out = x.clone().reshape(x.shape[0], c, h, w)
    if kind == "pixel":
        out[:, :, -1, -1] = value
    else:
        out[:, :, -3:, -3:] = (_PATTERN * value).to(out)
    return out.reshape(x.shape)


def stamped_backdoor(
    x: torch.Tensor,
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    *,
    kind: str,
    target: int,
) -> Backdoor:
    """A trigger set of real inputs with a BadNets trigger, all labelled ``target``.

    Inputs whose stamped version the ground truth already calls ``target`` are dropped, so that
    ``T_L^(i) != f(t^(i))`` holds for every trigger, as a backdoor requires. This is BadNets'
    all-to-one backdoor; Zhang et al. (2018) watermark with such "content" triggers.

    Args:
        x: clean inputs ``(N, *input_shape)`` to stamp (not the owner's training records).
        ground_truth: ``O^f``, see :func:`ground_truth_labels`.
        kind: one of :data:`TRIGGER_KINDS`.
        target: the label every trigger gets.

    Returns:
        :class:`Backdoor` with at most ``N`` triggers.

    Reference: Gu et al. (2017), Section 3; Adi et al. (2018), Section 5 (other trigger sets).
    """
    target = check_int("target", target, minimum=0)
    T = stamp_trigger(x, kind=kind)
    keep = ground_truth_labels(ground_truth, T) != target
    if not bool(keep.any()):
        raise ValueError(f"the ground truth calls every stamped input {target}: no trigger is left")
    T = T[keep.to(T.device)]
    return Backdoor(T, torch.full((T.shape[0],), target, dtype=torch.int64))


@dataclass(frozen=True)
class MarkingKey:
    """The secret marking key ``mk = (b, {r_t^(i), r_L^(i)})``.

    Attributes:
        b: the backdoor ``(T, T_L)``.
        r_t: n nonces (32 bytes each) opening the commitments to the images ``t^(i)``.
        r_L: n nonces opening the commitments to the labels ``T_L^(i)``.
    """

    b: Backdoor
    r_t: tuple[bytes, ...]
    r_L: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "r_t", tuple(self.r_t))
        object.__setattr__(self, "r_L", tuple(self.r_L))
        n = len(self.b)
        if len(self.r_t) != n or len(self.r_L) != n:
            raise ValueError(f"mk needs one nonce per trigger ({n}), got {len(self.r_t)} r_t and {len(self.r_L)} r_L")

    @property
    def T(self) -> torch.Tensor:
        return self.b.T

    @property
    def T_L(self) -> torch.Tensor:
        return self.b.T_L

    def __len__(self) -> int:
        return len(self.b)


@dataclass(frozen=True)
class VerificationKey:
    """The public verification key ``vk = {c_t^(i), c_L^(i)}``.

    Attributes:
        c_t: n commitments (32 bytes each) to the trigger images.
        c_L: n commitments to the trigger labels.
    """

    c_t: tuple[bytes, ...]
    c_L: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "c_t", tuple(self.c_t))
        object.__setattr__(self, "c_L", tuple(self.c_L))
        if len(self.c_t) != len(self.c_L):
            raise ValueError(f"vk needs as many label commitments as image commitments, got {len(self.c_t)} and {len(self.c_L)}")

    def __len__(self) -> int:
        return len(self.c_t)


class KeyPair(NamedTuple):
    """``(mk, vk)`` as returned by :func:`keygen`."""

    mk: MarkingKey
    vk: VerificationKey


def keygen(
    n: int,
    *,
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    input_shape: Sequence[int] = (64,),
    n_classes: int | None = None,
    seed: int | torch.Generator | None = 0,
) -> KeyPair:
    """``KeyGen()``: sample a backdoor, commit to each trigger image and label.

    1. ``b = (T, T_L) <- SampleBackdoor(O^f)`` with ``|T| = n`` (:func:`sample_backdoor`).
    2. Draw ``2n`` fresh nonces ``r_t^(i), r_L^(i)`` and compute ``c_t^(i) = Com(t^(i), r_t^(i))``,
       ``c_L^(i) = Com(T_L^(i), r_L^(i))`` (labels are committed as Python ints).
    3. ``mk = (b, {r_t^(i), r_L^(i)})``, ``vk = {c_t^(i), c_L^(i)}``.

    Args:
        n: trigger set size.
        ground_truth: ``O^f``, see :func:`ground_truth_labels`.
        input_shape: shape of one input.
        n_classes: number of classes C (default ``ground_truth.n_classes``).
        seed: seed or generator for the backdoor ``b`` only. The nonces always come from the
            operating system's CSPRNG, so two calls with the same seed give the same ``(T, T_L)``
            but different nonces and commitments.

    Returns:
        :class:`KeyPair` ``(mk, vk)``.

    Reference: Adi et al. (2018), Section 4 (KeyGen).
    """
    ### BEGIN SOLUTION lab2_watermarking
    b = sample_backdoor(n, ground_truth, input_shape=input_shape, n_classes=n_classes, seed=seed)
    com_t = [commit(b.T[i]) for i in range(n)]
    com_L = [commit(int(b.T_L[i])) for i in range(n)]
    mk = MarkingKey(b, tuple(x.r for x in com_t), tuple(x.r for x in com_L))
    vk = VerificationKey(tuple(x.c for x in com_t), tuple(x.c for x in com_L))
    return KeyPair(mk, vk)
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Mark
# --------------------------------------------------------------------------------------------


def mixed_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    b: Backdoor,
    *,
    batch_size: int = 64,
    k: int = 8,
    seed: int | torch.Generator | None = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches with ``k`` trigger records appended to every batch.

    The data records are shuffled and cut into ``ceil(N / batch_size)`` batches (each record in
    exactly one batch). The trigger records are dealt out in the order of consecutive random
    permutations of ``{0, ..., n-1}``, ``k`` per batch, so within an epoch every trigger is used
    equally often (counts differ by at most one). Each batch is the data records followed by
    the ``k`` triggers ``t^(j)`` with their labels ``T_L^(j)``.

    Args:
        x: training inputs ``(N, *input_shape)``.
        y: training labels, int64 ``(N,)``.
        b: the backdoor ``(T, T_L)`` (``mk.b``).
        batch_size: data records per batch (the last batch may be smaller).
        k: trigger records per batch (the paper's code: 2 per batch of 100; see :func:`mark`).
        seed: seed or generator for both shuffles.

    Returns:
        list of ``(x_batch, y_batch)`` with shapes ``(B_j + k, *input_shape)`` and ``(B_j + k,)``,
        on ``x``'s device.

    Reference: Adi et al. (2018), Section 5 (the trigger set is added to each training batch).
    """
    ### BEGIN SOLUTION lab2_watermarking
    x = as_features(x, name="x", shape=tuple(b.T.shape[1:]))
    y = as_labels(y, name="y", n=x.shape[0])
    if batch_size < 1 or k < 0:
        raise ValueError(f"batch_size must be >= 1 and k >= 0, got batch_size={batch_size}, k={k}")
    N, n = x.shape[0], len(b)
    if n == 0 and k > 0:
        raise ValueError(f"the trigger set is empty but k={k} trigger records per batch were asked for")
    gen = make_generator(seed)
    n_batches = math.ceil(N / batch_size)
    order = torch.randperm(N, generator=gen)  # (N,)
    n_perms = math.ceil(n_batches * k / n) if n else 0
    trig = torch.cat([torch.randperm(n, generator=gen) for _ in range(n_perms)] + [torch.zeros(0, dtype=torch.int64)])
    trig = trig[: n_batches * k].reshape(n_batches, k)  # (n_batches, k)
    T, T_L = b.T.to(x.device), b.T_L.to(x.device)
    batches = []
    for j in range(n_batches):
        idx = order[j * batch_size : (j + 1) * batch_size].to(x.device)
        tj = trig[j].to(x.device)
        batches.append((torch.cat([x[idx], T[tj]]), torch.cat([y[idx], T_L[tj]])))
    return batches
    ### END SOLUTION


def reinitialize_(module: nn.Module, *, seed: int | torch.Generator | None = 0) -> nn.Module:
    """Re-draw the weights of every ``nn.Linear`` and ``nn.Conv*`` layer of ``module`` in place.

    PyTorch's default initialisation drawn from ``seed`` (:func:`labkit.utils.reset_parameters_`),
    so the same seed gives the same weights, on any device.

    Raises:
        ValueError: if ``module`` holds parameters in another kind of layer.
    """
    for m in module.modules():
        if list(m.parameters(recurse=False)) and not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise ValueError(f"can re-initialize Linear and Conv layers only, got {type(m).__name__}")
    return reset_parameters_(module, seed=seed)


def mark(
    M: nn.Module,
    mk: MarkingKey,
    data: Data,
    *,
    mode: str = "fromscratch",
    epochs: int | None = None,
    batch_size: int = 64,
    k: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int | torch.Generator | None = 0,
) -> nn.Module:
    """``Mark(M, mk)``: embed the backdoor ``mk.b`` into a model; ``M`` itself is not changed.

    Training uses Adam and cross-entropy on batches from :func:`mixed_batches`: every batch of
    ``batch_size`` training records carries ``k`` trigger records ``(t, T_L)``.

    Args:
        M: the model. ``"fromscratch"``: only its architecture is used; a copy is re-initialized
            from ``seed`` (:func:`reinitialize_`) and trained on ``data`` and ``T``.
            ``"pretrained"``: a trained model; a copy is fine-tuned on ``data`` and ``T``.
        mk: the marking key.
        data: the owner's training data (inputs shaped like ``mk.T``).
        mode: ``"fromscratch"`` or ``"pretrained"`` (the paper's FROMSCRATCH and PRETRAINED).
        epochs: passes over ``data`` (default 80).
        batch_size, k: data and trigger records per batch; ``k`` defaults to 8 from scratch and 4
            when pre-trained. The paper's code appends 2 triggers to batches of 100 CIFAR images
            (100 triggers, 50,000 training images). On the labs' 1,000 digits with 50 triggers each
            trigger must be seen more often; these defaults were tuned on digits so that an MLP
            64-256-10 reaches 100% trigger accuracy while losing at most about half a point of
            test accuracy (more triggers per batch cost test accuracy, fewer make the mark easier
            to fine-tune away).
        lr, weight_decay: Adam settings.
        seed: initialization (FROMSCRATCH) and shuffling.

    Returns:
        the marked model ``M_hat`` (a new module, in eval mode, on ``M``'s device).

    Reference: Adi et al. (2018), Section 4 (Mark) and Section 5 (FROMSCRATCH, PRETRAINED).
    """
    if mode not in ("fromscratch", "pretrained"):
        raise ValueError(f"mode must be 'fromscratch' or 'pretrained', got {mode!r}")
    if not isinstance(mk, MarkingKey):
        raise ValueError(f"mk must be a MarkingKey (from keygen), got {type(mk).__name__}")
    if not isinstance(data, Data):
        raise ValueError(f"data must be a labkit.data.Data, got {type(data).__name__}")
    if tuple(data.input_shape) != tuple(mk.T.shape[1:]):
        raise ValueError(f"data inputs have shape {data.input_shape} but the trigger images have shape {tuple(mk.T.shape[1:])}")
    if epochs is None:
        epochs = 80
    if k is None:
        k = 8 if mode == "fromscratch" else 4
    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs must be >= 1 and lr > 0, got {epochs} and {lr}")
    gen = make_generator(seed)
    M_hat = copy.deepcopy(M)
    if mode == "fromscratch":
        device = device_of(M_hat)
        reinitialize_(M_hat.cpu(), seed=gen).to(device)
    device = device_of(M_hat)
    x, y = data.x.to(device), data.y.to(device)

    def batches():
        return mixed_batches(x, y, mk.b, batch_size=batch_size, k=k, seed=gen)

    def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(M_hat(xb), yb)

    M_hat.train()
    train_loop(M_hat.parameters(), batches, loss_fn, epochs=epochs, lr=lr, weight_decay=weight_decay, desc=f"Mark ({mode})")
    return M_hat.eval()


# --------------------------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------------------------


def trigger_accuracy(M: nn.Module, mk: MarkingKey | Backdoor) -> float:
    """Fraction of the trigger set that ``M`` classifies as ``T_L`` (in ``[0, 1]``)."""
    b = mk.b if isinstance(mk, MarkingKey) else mk
    if not isinstance(b, Backdoor):
        raise ValueError(f"mk must be a MarkingKey or a Backdoor, got {type(mk).__name__}")
    return float((predict(M, b.T).cpu() == b.T_L.cpu()).float().mean())


def verify(
    mk: MarkingKey,
    vk: VerificationKey,
    M: nn.Module,
    *,
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    epsilon: float,
) -> int:
    """``Verify(mk, vk, M)``: output 1 if ``M`` carries the watermark of ``(mk, vk)``, else 0.

    1. For ``b = (T, T_L)``: if ``T_L^(i) == f(t^(i))`` for some i (``f`` from ``ground_truth``),
       output 0.
    2. If some ``Open(c_t^(i), t^(i), r_t^(i))`` or ``Open(c_L^(i), T_L^(i), r_L^(i))`` fails,
       output 0.
    3. Output 1 iff ``Classify(t^(i), M) = T_L^(i)`` for all but at most ``epsilon * |T|``
       triggers (that is, at most ``floor(epsilon * |T|)`` mistakes), else 0.

    Args:
        mk: the marking key ``(b, nonces)`` revealed by the claimed owner.
        vk: the verification key (commitments) published earlier.
        M: the model under test; ``Classify`` is :func:`labkit.train.predict`.
        ground_truth: ``O^f`` (see :func:`ground_truth_labels`).
        epsilon: tolerated fraction of trigger mistakes, in ``[0, 1]``.

    Returns:
        int, 1 or 0.

    Reference: Adi et al. (2018), Section 4 (Verify).
    """
    ### BEGIN SOLUTION lab2_watermarking
    if not isinstance(mk, MarkingKey) or not isinstance(vk, VerificationKey):
        raise ValueError(f"mk and vk must be a MarkingKey and a VerificationKey, got {type(mk).__name__} and {type(vk).__name__}")
    if not 0.0 <= float(epsilon) <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1], got {epsilon}")
    n = len(mk)
    if len(vk) != n:
        raise ValueError(f"mk holds {n} triggers but vk holds {len(vk)} commitment pairs")
    T, T_L = mk.b.T, mk.b.T_L.cpu()  # predictions and ground truth come back on the CPU
    # step 1: the labels must be wrong according to the ground truth
    if bool((ground_truth_labels(ground_truth, T) == T_L).any()):
        return 0
    # step 2: every commitment opens
    for i in range(n):
        if not open_commitment(vk.c_t[i], T[i], mk.r_t[i]):
            return 0
        if not open_commitment(vk.c_L[i], int(T_L[i]), mk.r_L[i]):
            return 0
    # step 3: M agrees with T_L on all but epsilon * |T| triggers
    mistakes = int((predict(M, T).cpu() != T_L).sum())
    return int(mistakes <= math.floor(float(epsilon) * n + 1e-9))
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Removal attacks
# --------------------------------------------------------------------------------------------

FINE_TUNE_MODES = ("FTLL", "FTAL", "RTLL", "RTAL")


def last_layer(model: nn.Module) -> nn.Module:
    """The output layer of ``model``: its last ``nn.Linear`` (or ``nn.Conv*``) in module order."""
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not layers:
        raise ValueError(f"model must contain an nn.Linear output layer, got {type(model).__name__} with none")
    return layers[-1]


def fine_tune_attack(
    model: nn.Module,
    data: Data,
    *,
    mode: str,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int | torch.Generator | None = 0,
) -> nn.Module:
    """Try to remove a watermark by fine-tuning on held-out data (no trigger records).

    Modes (Adi et al. 2018, Section 5.2):

    * ``"FTLL"``: fine-tune the last layer only (all others frozen);
    * ``"FTAL"``: fine-tune all layers;
    * ``"RTLL"``: re-initialize the last layer (from ``seed``), then train it only;
    * ``"RTAL"``: re-initialize the last layer, then train all layers.

    Args:
        model: the (marked) model; it is not changed.
        data: the adversary's labelled data, disjoint from the owner's training data.
        mode: one of :data:`FINE_TUNE_MODES`.
        epochs, batch_size, lr: training settings (Adam, :func:`labkit.train.fit`).
        seed: re-initialization and shuffling.

    Returns:
        the fine-tuned copy, in eval mode.
    """
    ### BEGIN SOLUTION lab2_watermarking
    if mode not in FINE_TUNE_MODES:
        raise ValueError(f"mode must be one of {FINE_TUNE_MODES}, got {mode!r}")
    if not isinstance(data, Data):
        raise ValueError(f"data must be a labkit.data.Data, got {type(data).__name__}")
    gen = make_generator(seed)
    attacked = copy.deepcopy(model)
    head = last_layer(attacked)
    if mode.startswith("RT"):
        device = device_of(head)
        reinitialize_(head.cpu(), seed=gen).to(device)
    if mode.endswith("LL"):
        for p in attacked.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    try:
        fit(attacked, data.x, data.y, epochs=epochs, batch_size=batch_size, lr=lr, seed=gen, desc=f"{mode} attack")
    finally:
        for p in attacked.parameters():
            p.requires_grad_(True)
    return attacked.eval()
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Security games: a challenger plays an adversary against a verifier
# --------------------------------------------------------------------------------------------

Verifier = Callable[[MarkingKey, VerificationKey, nn.Module], int]  # (mk, vk, M) -> 0 or 1


@dataclass(frozen=True)
class GameResult:
    """What the challenger records over repeated plays of a security game.

    Attributes:
        outcomes: one bit per trial, 1 where the adversary won that trial.
    """

    outcomes: tuple[int, ...]

    def __post_init__(self) -> None:
        outcomes = tuple(self.outcomes)
        if not outcomes or any(isinstance(o, bool) or o not in (0, 1) for o in outcomes):
            raise ValueError(f"outcomes must be a non-empty sequence of bits 0/1, got {outcomes!r:.80}")
        object.__setattr__(self, "outcomes", tuple(int(o) for o in outcomes))

    @property
    def wins(self) -> int:
        """Trials the adversary won."""
        return sum(self.outcomes)

    @property
    def trials(self) -> int:
        """Trials played."""
        return len(self.outcomes)

    @property
    def win_rate(self) -> float:
        """``wins / trials``, in ``[0, 1]``."""
        return self.wins / self.trials

    def __str__(self) -> str:
        return f"{self.wins}/{self.trials}"


def _check_game(verify, trials) -> int:
    """``trials`` as an int >= 1, once ``verify`` is known to be callable."""
    if not callable(verify):
        raise ValueError(f"verify must be a callable (mk, vk, M) -> 0 or 1, got {type(verify).__name__}")
    return check_int("trials", trials, minimum=1)


def _verdict(b) -> int:
    """The verifier's answer as an int bit; anything else is the verifier's error."""
    if isinstance(b, torch.Tensor) and b.numel() == 1:
        b = b.item()
    if isinstance(b, bool) or b not in (0, 1):
        raise ValueError(f"the verifier must return 0 or 1, got {b!r}")
    return int(b)


def unforgeability_game(
    adversary: Callable[..., MarkingKey],
    vk: VerificationKey,
    M_hat: nn.Module,
    *,
    verify: Verifier,
    trials: int = 1,
    seed: int | torch.Generator | None = 0,
) -> GameResult:
    """The unforgeability game: can an adversary holding ``vk`` and ``M_hat``, but not ``mk``, claim ``M_hat``?

    In each trial the challenger hands the adversary the public key and **its own copy** of the
    marked model and receives a candidate marking key:
    ``mk' = adversary(vk, copy.deepcopy(M_hat), seed=gen)``. It then runs the verifier on the
    published ``vk`` and its own, untouched ``M_hat``; the adversary wins the trial when
    ``verify(mk', vk, M_hat) == 1``. One generator ``gen = make_generator(seed)`` serves every
    trial, so the trials differ and the whole game is reproducible.

    Args:
        adversary: a callable ``(vk, M, *, seed) -> MarkingKey`` (``seed`` receives a
            ``torch.Generator``).
        vk: the published verification key.
        M_hat: the marked model the adversary wants to claim.
        verify: the verifier, a callable ``(mk, vk, M) -> 0 or 1`` (for example Verify with its
            ground truth and epsilon bound).
        trials: how many times to play (>= 1).
        seed: seed or generator for the adversary's randomness.

    Returns:
        :class:`GameResult` with one outcome per trial.

    Raises:
        ValueError: when ``vk`` is not a VerificationKey, ``trials < 1``, the adversary outputs
            something other than a MarkingKey with ``len(vk)`` triggers, or the verifier returns
            something other than 0 or 1.

    Reference: Adi et al. (2018), Section 3 (unforgeability: an adversary that knows ``vk`` but
    not ``mk`` cannot convince a third party that it owns the model).
    """
    ### BEGIN SOLUTION lab2_watermarking
    if not isinstance(vk, VerificationKey):
        raise ValueError(f"vk must be a VerificationKey, got {type(vk).__name__}")
    trials = _check_game(verify, trials)
    gen = make_generator(seed)
    outcomes = []
    for _ in range(trials):
        forged = adversary(vk, copy.deepcopy(M_hat), seed=gen)  # the adversary works on its own copy
        if not isinstance(forged, MarkingKey) or len(forged) != len(vk):
            got = f"a MarkingKey with {len(forged)} triggers" if isinstance(forged, MarkingKey) else type(forged).__name__
            raise ValueError(f"the adversary must output a MarkingKey with {len(vk)} triggers (one per commitment pair of vk), got {got}")
        outcomes.append(_verdict(verify(forged, vk, M_hat)))
    return GameResult(tuple(outcomes))
    ### END SOLUTION


def ownership_game(
    adversary: Callable[..., KeyPair],
    models: Sequence[nn.Module],
    *,
    verify: Verifier,
    trials: int = 1,
    seed: int | torch.Generator | None = 0,
) -> GameResult:
    """The non-trivial ownership game: can a key pair prepared in advance claim models its maker never saw?

    In each trial the adversary, who knows KeyGen, Mark and Verify but sees no model, prepares a
    key pair: ``mk, vk = adversary(seed=gen)``. Only then does the challenger bring out its
    ``models`` (trained without the adversary); the adversary wins the trial when Verify accepts
    at least one of them, ``verify(mk, vk, M) == 1``. One generator ``gen = make_generator(seed)``
    serves every trial.

    Args:
        adversary: a callable ``(*, seed) -> (mk, vk)`` (a :class:`KeyPair` or a pair of a
            MarkingKey and a VerificationKey of the same size).
        models: the challenger's models, at least one.
        verify: the verifier, a callable ``(mk, vk, M) -> 0 or 1``.
        trials: how many key pairs the adversary prepares (>= 1).
        seed: seed or generator for the adversary's randomness.

    Returns:
        :class:`GameResult` with one outcome per trial.

    Raises:
        ValueError: when ``models`` is empty, ``trials < 1``, the adversary's output is not a
            pair ``(MarkingKey, VerificationKey)`` of one size, or the verifier returns something
            other than 0 or 1.

    Reference: Adi et al. (2018), Section 3 (non-trivial ownership: an adversary that knows the
    algorithms cannot generate in advance a key pair that claims arbitrary models unknown to it).
    """
    ### BEGIN SOLUTION lab2_watermarking
    models = list(models)
    if not models:
        raise ValueError("models must hold at least one model for the challenger to reveal")
    trials = _check_game(verify, trials)
    gen = make_generator(seed)
    outcomes = []
    for _ in range(trials):
        pair = adversary(seed=gen)  # prepared before, and without, any of the models
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], MarkingKey)
                and isinstance(pair[1], VerificationKey) and len(pair[0]) == len(pair[1])):
            raise ValueError(f"the adversary must output (mk, vk): a MarkingKey and a VerificationKey of one size, got {type(pair).__name__}")
        mk_a, vk_a = pair
        outcomes.append(int(any(_verdict(verify(mk_a, vk_a, M)) for M in models)))
    return GameResult(tuple(outcomes))
    ### END SOLUTION
