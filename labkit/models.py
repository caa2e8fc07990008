"""Small models that train in seconds on a CPU: MLP, a small CNN, logistic regression.

Every model returns logits of shape ``(N, C)`` and carries ``input_shape`` (the shape of one
input) and ``n_classes``, which the oracle uses to check queries.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "LogisticRegression"]


class MLP(nn.Module):
    """Fully connected network: ``in_features -> hidden... -> n_classes``.

    Args:
        in_features: input dimension d.
        n_classes: number of output classes C.
        hidden: widths of the hidden layers (default one layer of 128, as in Shokri et al. 2017).
        activation: ``"tanh"`` (Shokri et al.) or ``"relu"``.
        dropout: dropout probability after each hidden layer (0 disables it).
        seed: draws the initial weights from this seed (None: from torch's global generator).
    """

    def __init__(self, in_features: int, n_classes: int, *, hidden: Sequence[int] = (128,), activation: str = "relu", dropout: float = 0.0, seed: int | None = None) -> None:
        super().__init__()
        if activation not in ("relu", "tanh"):
            raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
        _check_dims(in_features=in_features, n_classes=n_classes)
        act = nn.ReLU if activation == "relu" else nn.Tanh
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)
        _seeded_reset(self, seed)
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
        seed: draws the initial weights from this seed (None: from torch's global generator).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 8, 8), n_classes: int = 10, *, width: int = 16, seed: int | None = None) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}")
        _check_dims(n_classes=n_classes)
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), n_classes)
        _seeded_reset(self, seed)
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
    ``W x + b``, ``linear`` maps d -> C). ``seed`` draws the initial weights (None: torch's global
    generator).
    """

    def __init__(self, in_features: int, n_classes: int = 2, *, seed: int | None = None) -> None:
        super().__init__()
        _check_dims(in_features=in_features, n_classes=n_classes)
        self.binary = n_classes == 2
        self.linear = nn.Linear(in_features, 1 if self.binary else n_classes)
        _seeded_reset(self, seed)
        self.input_shape = (in_features,)
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x.flatten(1))  # (N, 1) or (N, C)
        if self.binary:
            return torch.cat([torch.zeros_like(z), z], dim=1)  # (N, 2)
        return z


def _seeded_reset(module: nn.Module, seed: int | None) -> None:
    """Re-draw every layer's initial weights from ``seed`` (in a forked RNG: the reset draws nothing from the global one)."""
    if seed is None:
        return
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    with torch.random.fork_rng(devices=[]):  # parameters are created on the CPU: only its state matters
        torch.default_generator.manual_seed(seed)  # not torch.manual_seed, which also reseeds CUDA for good
        for layer in module.modules():
            if layer is not module and hasattr(layer, "reset_parameters"):
                layer.reset_parameters()


def _check_dims(**dims: int) -> None:
    for name, val in dims.items():
        minimum = 2 if name == "n_classes" else 1
        if not isinstance(val, int) or isinstance(val, bool) or val < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {val!r}")


# --------------------------------------------------------------------------------------------
# Batched ensembles: k identical MLPs trained at once (shadow models, LiRA)
# --------------------------------------------------------------------------------------------
__all__ += ["BatchedMLP"]


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
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        _check_dims(in_features=in_features, n_classes=n_classes)
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {hidden}")
        from .utils import make_generator  # local import: models.py has no other labkit dependency

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
        model = MLP(self.input_shape[0], self.n_classes, hidden=self.hidden, activation=self.activation)
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
