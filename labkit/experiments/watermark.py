"""Watermark-removal experiments that combine the watermark with another attack.

:func:`extraction_attack` steals a marked model through its prediction API (learning-based
extraction, as in Lab 1) and lets Lab 2 ask whether the watermark survives. It is written with
the core modules only (an :class:`~labkit.oracle.Oracle` and :func:`labkit.train.fit`), so that
Lab 2 does not rest on Lab 1's graded ``train_surrogate``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..oracle import Oracle
from ..train import fit, soft_targets
from ..utils import as_features, check_int, device_of, make_generator

__all__ = ["extraction_attack"]


def extraction_attack(
    model: nn.Module,
    x_pool: torch.Tensor,
    surrogate: nn.Module,
    *,
    n_queries: int | None = None,
    output: str = "probs",
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int | torch.Generator | None = 0,
) -> nn.Module:
    """Steal ``model`` through its prediction API: train ``surrogate`` on the API's answers.

    The marked model is wrapped in a :class:`labkit.oracle.Oracle` (``output="probs"`` or
    ``"label"``), queried on ``n_queries`` random pool inputs, and the surrogate is fitted to the
    answers (soft targets, renormalised, or hard labels). The adversary never queries the trigger
    set, so whether the watermark survives depends on how far the surrogate copies the model off
    the data.

    Args:
        model: the (marked) victim.
        x_pool: the adversary's unlabelled inputs ``(N, *input_shape)``.
        surrogate: the adversary's (fresh) model; trained in place.
        n_queries: how many pool records to query (None: all).
        output: the oracle's answers, ``"probs"`` or ``"label"``.
        epochs, batch_size, lr: surrogate training settings (Adam).
        seed: seed or generator of the pool sample and of the training.

    Returns:
        the trained surrogate, in eval mode.

    Reference: Adi et al. (2018) discuss model stealing as a threat; the surrogate is
    learning-based extraction in the manner of Orekondy et al. (2019).
    """
    oracle = Oracle(model, output=output)
    x_pool = as_features(x_pool, name="x_pool", shape=oracle.input_shape)
    m = x_pool.shape[0]
    n_queries = m if n_queries is None else check_int("n_queries", n_queries, minimum=1)
    if n_queries > m:
        raise ValueError(f"n_queries must be at most the pool size {m}, got {n_queries}")
    gen = make_generator(seed)
    x_q = x_pool[torch.randperm(m, generator=gen)[:n_queries]]
    answers = oracle(x_q)
    if answers.dim() == 2:  # probabilities: renormalise rows that a policy may have broken
        answers = soft_targets(answers)
    dev = device_of(surrogate)
    fit(surrogate, x_q.to(dev), answers.to(dev), epochs=epochs, batch_size=batch_size, lr=lr, seed=gen, desc="surrogate")
    return surrogate.eval()
