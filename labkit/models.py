"""Small models that train in seconds on a CPU: MLP, a small CNN, logistic regression.

Every model returns logits of shape ``(N, C)`` and carries ``input_shape`` (the shape of one
input) and ``n_classes``, which the oracle uses to check queries. Initial weights follow
PyTorch's default schemes, drawn from ``seed`` (:func:`labkit.utils.init_from_seed`): building a
model never touches torch's global generator. The batched ensemble of identical MLPs is in
:mod:`labkit.ensemble`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .utils import check_int, init_from_seed

__all__ = ["MLP", "SmallCNN", "LogisticRegression", "check_dims"]


class MLP(nn.Module):
    """Fully connected network: ``in_features -> hidden... -> n_classes``.

    Args:
        in_features: input dimension d.
        n_classes: number of output classes C.
        hidden: widths of the hidden layers (default one layer of 128, as in Shokri et al. 2017).
        activation: ``"tanh"`` (Shokri et al.) or ``"relu"``.
        dropout: dropout probability after each hidden layer (0 disables it).
        seed: seed or generator of the initial weights (``None``: a fresh seed from the OS).
    """

    def __init__(self, in_features: int, n_classes: int, *, hidden: Sequence[int] = (128,), activation: str = "relu", dropout: float = 0.0, seed: int | torch.Generator | None = 0) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        check_dims(in_features=in_features, n_classes=n_classes)
        act = nn.ReLU if activation == "relu" else nn.Tanh
        layers: list[nn.Module] = []
        width = in_features
        with init_from_seed(seed):
            for h in hidden:
                layers += [nn.Linear(width, h), act()]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                width = h
            layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        self.input_shape = (in_features,)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (N, C)


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head, for 8x8 digits or 28x28 MNIST-like images.

    Args:
        input_shape: ``(channels, height, width)``, e.g. ``(1, 8, 8)`` or ``(1, 28, 28)``.
        n_classes: number of output classes.
        width: channels of the first conv layer (the second has twice as many).
        seed: seed or generator of the initial weights (``None``: a fresh seed from the OS).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), n_classes: int = 10, *, width: int = 16, seed: int | torch.Generator | None = 0) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        check_dims(n_classes=n_classes)
        c, h, w = input_shape
        with init_from_seed(seed):
            self.features = nn.Sequential(
                nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )
            self.head = nn.Linear(2 * width * (h // 4) * (w // 4), n_classes)
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flattened images
            x = x.reshape(-1, *self.input_shape)
        return self.head(self.features(x).flatten(1))  # (N, C)


class LogisticRegression(nn.Module):
    """Logistic regression with logits of shape ``(N, C)``.

    With ``n_classes == 2`` the model is the binary one, ``P(y=1|x) = sigmoid(w.x + b)``, with a
    single weight vector (``linear`` maps d -> 1) and logits ``[0, w.x + b]``, so a softmax over
    them gives ``[1 - sigmoid, sigmoid]``. With more classes it is multinomial (softmax over
    ``W x + b``, ``linear`` maps d -> C). ``seed``: seed or generator of the initial weights.
    """

    def __init__(self, in_features: int, n_classes: int = 2, *, seed: int | torch.Generator | None = 0) -> None:
        super().__init__()
        check_dims(in_features=in_features, n_classes=n_classes)
        self.binary = n_classes == 2
        with init_from_seed(seed):
            self.linear = nn.Linear(in_features, 1 if self.binary else n_classes)
        self.input_shape = (in_features,)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x.flatten(1))  # (N, 1) or (N, C)
        if self.binary:
            return torch.cat([torch.zeros_like(z), z], dim=1)  # (N, 2)
        return z


def check_dims(**dims: int) -> None:
    """Layer sizes are ints >= 1, and ``n_classes`` is >= 2; ValueError naming the first that is not."""
    for name, val in dims.items():
        check_int(name, val, minimum=2 if name == "n_classes" else 1)
