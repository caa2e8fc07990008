"""The black-box prediction API an attacker talks to.

An :class:`Oracle` wraps a trained model the way an ML-as-a-service endpoint does: it answers
queries with a (possibly degraded) prediction, counts every record queried, and refuses queries
past an optional budget. Attack code sees a victim only through an oracle.

Output policies (Shokri et al. 2017, Section VI; Tramer et al. 2016, Section 7) are applied in
this order: temperature, then top-k, then rounding; ``"label"`` returns the arg-max class only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .train import predict_proba
from .utils import as_features

__all__ = ["OutputPolicy", "Oracle", "QueryBudgetExceeded", "apply_policy"]


class QueryBudgetExceeded(RuntimeError):
    """Raised when a query would take an oracle past its budget (nothing is answered)."""


@dataclass(frozen=True)
class OutputPolicy:
    """How an oracle degrades its answers.

    Attributes:
        output: ``"probs"`` for a probability vector ``(N, C)``, ``"label"`` for the arg-max
            label only (int64 ``(N,)``).
        top_k: keep the k largest probabilities and set the rest to 0 (None keeps all).
        decimals: round probabilities to this many decimals (None: no rounding).
        temperature: divide the logits by this before the softmax (1: the model's own).
    """

    output: str = "probs"
    top_k: int | None = None
    decimals: int | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.output not in ("probs", "label"):
            raise ValueError(f"output must be 'probs' or 'label', got {self.output!r}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ValueError(f"top_k must be a positive int or None, got {self.top_k!r}")
        if self.decimals is not None and (not isinstance(self.decimals, int) or self.decimals < 0):
            raise ValueError(f"decimals must be a non-negative int or None, got {self.decimals!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")


def apply_policy(probs: torch.Tensor, policy: OutputPolicy) -> torch.Tensor:
    """Apply top-k, rounding or label-only to probabilities ``(N, C)`` (temperature is applied
    earlier, on the logits). Returns ``(N, C)`` float, or int64 ``(N,)`` for ``"label"``."""
    if policy.output == "label":
        return probs.argmax(dim=1)
    out = probs
    if policy.top_k is not None and policy.top_k < probs.shape[1]:
        kth = probs.topk(policy.top_k, dim=1).indices  # (N, k)
        out = torch.zeros_like(probs).scatter(1, kth, probs.gather(1, kth))
    if policy.decimals is not None:
        scale = 10.0**policy.decimals
        out = torch.round(out * scale) / scale
    return out


class Oracle:
    """A black-box prediction API around ``model``.

    Args:
        model: the victim (returns logits ``(N, C)``); it is put in eval mode.
        policy: an :class:`OutputPolicy`; alternatively pass its fields as keywords
            (``output``, ``top_k``, ``decimals``, ``temperature``).
        budget: the most records the oracle will answer in total (None: unlimited).
        input_shape: shape of one query; defaults to ``model.input_shape``.

    Attributes:
        queries: number of records answered so far.

    Example:
        >>> oracle = Oracle(model, output="label", budget=500)
        >>> labels = oracle(x)          # (N,) int64; oracle.queries == N
    """

    def __init__(
        self,
        model: nn.Module,
        policy: OutputPolicy | None = None,
        *,
        budget: int | None = None,
        input_shape: tuple[int, ...] | None = None,
        **policy_fields,
    ) -> None:
        if policy is not None and policy_fields:
            raise ValueError("pass either policy= or its fields as keywords, not both")
        self.policy = policy if policy is not None else OutputPolicy(**policy_fields)
        if budget is not None and (not isinstance(budget, int) or budget < 0):
            raise ValueError(f"budget must be a non-negative int or None, got {budget!r}")
        self._model = model.eval()
        self.budget = budget
        if input_shape is None and not hasattr(model, "input_shape"):
            raise ValueError("the model has no input_shape attribute: pass input_shape=(...), the shape of one query")
        if not isinstance(getattr(model, "n_classes", None), int):
            raise ValueError("the model must have an int attribute n_classes (labkit models do)")
        self.input_shape = tuple(input_shape if input_shape is not None else model.input_shape)
        self.n_classes: int = model.n_classes
        self.queries = 0

    @property
    def remaining(self) -> int | None:
        """Queries left under the budget (None when unlimited)."""
        return None if self.budget is None else self.budget - self.queries

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Answer a batch of queries ``(N, *input_shape)`` under the oracle's policy."""
        return self.query(x)

    def query(self, x: torch.Tensor) -> torch.Tensor:
        """Answer a batch of queries; see the class docstring."""
        x = as_features(x, name="query", shape=self.input_shape)
        n = x.shape[0]
        if self.budget is not None and self.queries + n > self.budget:
            raise QueryBudgetExceeded(
                f"this query of {n} records would exceed the budget of {self.budget} "
                f"({self.queries} already used, {self.remaining} left)"
            )
        self.queries += n
        probs = predict_proba(self._model, x, temperature=self.policy.temperature)
        return apply_policy(probs, self.policy)

    def reset(self) -> None:
        """Set the query counter back to zero."""
        self.queries = 0

    def __repr__(self) -> str:
        return f"Oracle(policy={self.policy}, budget={self.budget}, queries={self.queries})"
