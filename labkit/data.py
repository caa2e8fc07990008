"""Datasets: embedded defaults that need no network, local torchvision loaders, disjoint splits.

Every lab runs on the two embedded datasets:

* :func:`load_digits`: scikit-learn's 1,797 real 8x8 handwritten digits (shipped inside
  scikit-learn, so nothing is downloaded).
* :func:`make_purchase`: a synthetic stand-in for the Purchase data of Shokri et al. (2017),
  600 binary "bought / not bought" features and a configurable number of classes.

MNIST, Fashion-MNIST and CIFAR-10 load through torchvision from a local folder when a user has
them (:func:`load_torchvision`); nothing downloads unless ``download=True`` is passed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .utils import as_features, as_labels, make_generator, spawn_seed

__all__ = ["Data", "Splits", "load_digits", "make_purchase", "load_olivetti_faces", "load_torchvision", "make_splits"]


@dataclass
class Data:
    """A labelled dataset held in memory.

    Attributes:
        x: inputs, float32 tensor of shape ``(N, *input_shape)``.
        y: labels, int64 tensor of shape ``(N,)`` with values in ``[0, n_classes)``.
        n_classes: number of classes.
        name: a short human-readable name.
    """

    x: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str = "data"

    def __post_init__(self) -> None:
        self.x = as_features(self.x, name="x")
        self.y = as_labels(self.y, name="y", n_classes=self.n_classes, n=self.x.shape[0])

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(64,)`` or ``(1, 8, 8)``."""
        return tuple(self.x.shape[1:])

    def subset(self, index: torch.Tensor, *, name: str | None = None) -> "Data":
        """The records at ``index`` (an int64 index tensor or a boolean mask)."""
        return Data(self.x[index], self.y[index], self.n_classes, name or self.name)

    def to(self, device: torch.device | str) -> "Data":
        """A copy with ``x`` and ``y`` on ``device``."""
        return Data(self.x.to(device), self.y.to(device), self.n_classes, self.name)


@dataclass
class Splits:
    """Disjoint parts of one population, as the lectures' threat models use them.

    Attributes:
        target_train: the victim's private training set (the "members").
        target_test: held-out records from the same population (the "non-members").
        attacker: the attacker's pool of unlabeled-by-the-victim records (queries, surrogates).
        shadow: the pool from which shadow models draw their own training and test data.
    """

    target_train: Data
    target_test: Data
    attacker: Data
    shadow: Data

    def sizes(self) -> dict[str, int]:
        """Number of records in each part."""
        return {k: len(getattr(self, k)) for k in ("target_train", "target_test", "attacker", "shadow")}


def load_digits(*, image: bool = False) -> Data:
    """Load scikit-learn's 8x8 handwritten digits, pixel values scaled to ``[0, 1]``.

    Args:
        image: if True, ``x`` has shape ``(1797, 1, 8, 8)`` (for CNNs); else ``(1797, 64)``.

    Returns:
        :class:`Data` with 10 classes. The data ships with scikit-learn (UCI optical
        recognition of handwritten digits, test part); nothing is downloaded.
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32) / 16.0  # (1797, 64), pixel intensities 0..16
    if image:
        x = x.reshape(-1, 1, 8, 8)
    return Data(x, torch.tensor(bunch.target, dtype=torch.int64), 10, "digits")


def make_purchase(
    n_samples: int = 20_000,
    *,
    n_features: int = 600,
    n_classes: int = 100,
    strength: float = 1.5,
    base_a: float = 0.6,
    base_b: float = 4.0,
    seed: int | torch.Generator | None = 0,
) -> Data:
    """Generate a synthetic Purchase-like dataset of binary shopping records.

    Shokri et al. (2017) built "Purchase" from Kaggle's shopping histories: 600 binary features
    (did the customer buy product j?) and labels from k-means clustering of the records into
    2-100 "purchase styles". We keep that shape with a hierarchical Bernoulli model:

    1. Each product j has a population popularity ``q_j ~ Beta(base_a, base_b)`` (most products
       are rarely bought: the default mean is about 0.13).
    2. Each class c tilts every popularity in logit space:
       ``p_cj = sigmoid(logit(q_j) + strength * z_cj)`` with ``z_cj ~ N(0, 1)``.
    3. A record of class c (classes equally likely) has ``x_j ~ Bernoulli(p_cj)`` independently.

    ``strength`` sets how separable the classes are: with more classes and the same ``strength``
    there are fewer records per class and the task gets harder, as in the paper. The population
    (steps 1 and 2) depends only on ``seed``, ``n_features`` and ``n_classes``; records come from
    a second stream, so a larger ``n_samples`` extends the same population.

    Args:
        n_samples: number of records N.
        n_features: number of binary features d (600 in the paper).
        n_classes: number of classes (the paper uses 2, 10, 20, 50 and 100).
        strength: class separation (standard deviation of the logit tilt).
        base_a, base_b: Beta parameters of the population popularity.
        seed: seed or generator; the same seed gives the same records.

    Returns:
        :class:`Data` with ``x`` float32 of shape ``(N, d)`` holding 0/1 values and ``y`` int64.
    """
    for name, val in (("n_samples", n_samples), ("n_features", n_features)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive int, got {val!r}")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    if strength < 0 or base_a <= 0 or base_b <= 0:
        raise ValueError("strength must be >= 0 and base_a, base_b must be > 0")
    gen = make_generator(seed)
    pop_gen = make_generator(spawn_seed(gen))
    rec_gen = make_generator(spawn_seed(gen))
    # torch.distributions takes no generator: sample Beta through two Gammas by hand.
    q = _beta_sample(base_a, base_b, (n_features,), pop_gen).clamp(1e-4, 1 - 1e-4)  # (d,)
    z = torch.randn(n_classes, n_features, generator=pop_gen)  # (C, d)
    p = torch.sigmoid(torch.logit(q)[None, :] + strength * z)  # (C, d)
    y = torch.randint(0, n_classes, (n_samples,), generator=rec_gen)  # (N,)
    x = (torch.rand(n_samples, n_features, generator=rec_gen) < p[y]).float()  # (N, d)
    return Data(x, y, n_classes, f"purchase-{n_classes}")


def _beta_sample(a: float, b: float, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Beta(a, b) samples from a generator, via X/(X+Y) with X~Gamma(a), Y~Gamma(b)."""
    x = _gamma_sample(a, shape, gen)
    y = _gamma_sample(b, shape, gen)
    return x / (x + y)


def _gamma_sample(alpha: float, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Gamma(alpha, 1) samples by Marsaglia and Tsang (2000), with the alpha<1 boost."""
    boost = alpha < 1
    a = alpha + 1 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = int(np.prod(shape))
    out = torch.empty(0)
    while out.numel() < n:
        m = 2 * (n - out.numel()) + 16
        z = torch.randn(m, generator=gen, dtype=torch.float64)
        u = torch.rand(m, generator=gen, dtype=torch.float64)
        v = (1 + c * z) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * z**2 + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        out = torch.cat([out.double(), (d * v)[ok]])
    out = out[:n]
    if boost:
        out = out * torch.rand(n, generator=gen, dtype=torch.float64) ** (1.0 / alpha)
    return out.reshape(shape).float()


def load_olivetti_faces(*, data_home: str | None = None) -> Data:
    """Load the AT&T (Olivetti) faces from scikit-learn's local cache; never downloads.

    40 people, 10 images each, 64x64 grey levels in [0, 1] (the same kind of data as the faces
    Fredrikson et al. inverted).

    Args:
        data_home: scikit-learn's data folder (default ``~/scikit_learn_data``).

    Returns:
        :class:`Data` with ``x`` of shape ``(400, 1, 64, 64)`` and 40 classes.

    Raises:
        FileNotFoundError: when the faces are not cached; the message says how to cache them.
    """
    from sklearn.datasets import fetch_olivetti_faces, get_data_home

    try:
        bunch = fetch_olivetti_faces(data_home=data_home, download_if_missing=False)
    except OSError as err:
        raise FileNotFoundError(
            f"The Olivetti faces are not cached under {get_data_home(data_home)!r} and labkit never "
            "downloads. On a machine with network access run "
            "`python -c \"import sklearn.datasets as d; d.fetch_olivetti_faces()\"` once (or copy "
            "the cache folder here); meanwhile use labkit.data.load_digits()."
        ) from err
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # (400, 1, 64, 64)
    return Data(x, torch.tensor(bunch.target, dtype=torch.int64), 40, "olivetti-faces")


_TORCHVISION = {
    "mnist": ("MNIST", (1, 28, 28)),
    "fashion-mnist": ("FashionMNIST", (1, 28, 28)),
    "cifar10": ("CIFAR10", (3, 32, 32)),
}


def load_torchvision(name: str, root: str | Path, *, train: bool = True, download: bool = False) -> Data:
    """Load MNIST, Fashion-MNIST or CIFAR-10 from a local folder through torchvision.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        root: the folder torchvision uses (it holds e.g. ``MNIST/raw``).
        train: the training split if True, else the test split.
        download: fetch the files when absent. Off by default: labs never download.

    Returns:
        :class:`Data` with images of shape ``(N, C, H, W)`` in ``[0, 1]`` and 10 classes.

    Raises:
        ValueError: on an unknown name.
        FileNotFoundError: when the files are not under ``root`` and ``download`` is False; the
            message names the embedded alternatives.
    """
    key = name.lower()
    if key not in _TORCHVISION:
        raise ValueError(f"name must be one of {sorted(_TORCHVISION)}, got {name!r}")
    import torchvision

    cls_name, _ = _TORCHVISION[key]
    cls = getattr(torchvision.datasets, cls_name)
    try:
        ds = cls(root=str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found. You can use download=True ..."
        raise FileNotFoundError(
            f"{cls_name} was not found under {str(root)!r}. Put the torchvision files there, or pass "
            f"download=True on a machine with network access. Without it, use the embedded data: "
            f"labkit.data.load_digits() (real 8x8 digits) or labkit.data.make_purchase()."
        ) from err
    data = torch.as_tensor(np.asarray(ds.data))
    x = data.float() / 255.0
    x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)  # (N, C, H, W)
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return Data(x.contiguous(), y, 10, key)


def make_splits(
    data: Data,
    *,
    target_train: int | float,
    target_test: int | float,
    attacker: int | float = 0,
    shadow: int | float = 0,
    seed: int | torch.Generator | None = 0,
    stratify: bool = False,
) -> Splits:
    """Shuffle ``data`` and cut it into four disjoint parts.

    Args:
        data: the population.
        target_train, target_test, attacker, shadow: size of each part, as a count (int) or a
            fraction of ``len(data)`` (float in ``[0, 1]``).
        seed: seed or generator for the shuffle.
        stratify: keep class proportions in every part (by shuffling within each class and
            dealing records out round-robin).

    Returns:
        :class:`Splits`. Raises ValueError when the parts add up to more than ``len(data)``.
    """
    n = len(data)
    sizes = {}
    for key, val in (("target_train", target_train), ("target_test", target_test), ("attacker", attacker), ("shadow", shadow)):
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise ValueError(f"{key} must be a non-negative count or fraction, got {val!r}")
        if isinstance(val, float):
            if val > 1:
                raise ValueError(f"{key} as a fraction must lie in [0, 1], got {val}")
            val = int(round(val * n))
        sizes[key] = val
    if sum(sizes.values()) > n:
        raise ValueError(f"the parts need {sum(sizes.values())} records ({sizes}) but data has only {n}")
    gen = make_generator(seed)
    if stratify:
        order = _stratified_order(data.y, gen)
    else:
        order = torch.randperm(n, generator=gen)
    parts, start = {}, 0
    for key, size in sizes.items():
        parts[key] = data.subset(order[start : start + size], name=f"{data.name}/{key}")
        start += size
    return Splits(**parts)


def _stratified_order(y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A permutation that interleaves classes so that every prefix keeps class proportions."""
    keys = torch.empty(len(y), dtype=torch.float64)
    for c in torch.unique(y):
        idx = (y == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        # position within the class, scaled to [0, 1): records are dealt out evenly
        keys[idx] = (torch.arange(len(idx), dtype=torch.float64) + torch.rand(1, generator=gen, dtype=torch.float64)) / len(idx)
    return torch.argsort(keys, stable=True)
