"""Tiny models with hand-set weights, shared by the tests (cleverhans style)."""
import torch
from torch import nn


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


class Linear(nn.Module):
    """Softmax regression with hand-set weights ``(C, d)``: logits ``W x + b``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.input_shape, self.n_classes = (weight.shape[1],), weight.shape[0]

    def forward(self, x):
        return self.linear(x)
