"""The canary experiment of Carlini et al. (2019) on the character LM: one model per insertion
count r, each trained on a corpus that holds the canary r times, measured by rank, exposure and
extraction. The book's Chapter 3 and Lab 3 print its table.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..memorization import (
    Canary,
    CharLM,
    LMConfig,
    Vocab,
    canary_rank,
    candidate_log_perplexities,
    exposure,
    extract_secret,
    make_canary,
    make_corpus,
    train_lm,
)
from ..utils import make_generator

__all__ = ["CanaryResult", "canary_experiment"]


@dataclass
class CanaryResult:
    """One canary measured on one trained model."""

    canary: Canary
    exposure: float  # bits, log2(10^k) - log2(rank)
    rank: int  # 1 = the true secret is the most likely candidate
    max_exposure: float  # log2(10^k)
    extracted: str  # the secret found by beam search
    extracted_ok: bool  # extracted == canary.secret
    train_loss: float  # mean loss of the last 50 steps (nats per character)
    model: CharLM = field(repr=False, default=None)  # the trained model


def canary_experiment(
    insertions: Sequence[int] = (0, 1, 4, 16),
    *,
    k: int = 5,
    n_sentences: int = 500,
    config: LMConfig | None = None,
    beam_width: int = 16,
    seed: int | torch.Generator | None = 0,
    prefix: str = "my PIN is",
) -> list[CanaryResult]:
    """Train one LM per insertion count r, each on a corpus holding the canary r times.

    Every model sees the same template sentences and the same canary (only r changes), so
    the exposures are comparable; r = 0 is the model that never saw the canary.

    Args:
        insertions: the values of r.
        k: digits in the secret.
        n_sentences: template sentences per corpus.
        config: the LM's size and schedule (default :class:`LMConfig`).
        beam_width: beam used for extraction.
        seed: drives the secret, the corpus, the initialization and the training windows.
        prefix: the canary's template.

    Returns:
        One :class:`CanaryResult` per r, in order.
    """
    config = config or LMConfig()
    vocab = Vocab()
    gen = make_generator(seed)
    secret = make_canary(prefix, k=k, seed=gen).secret
    corpus_seed, init_seed, train_seed = (torch.randint(0, 2**31, (3,), generator=gen).tolist())
    results = []
    for r in insertions:
        canary = Canary(secret=secret, prefix=prefix, insertions=int(r))
        text = make_corpus(n_sentences, canaries=[canary], seed=corpus_seed)
        model = CharLM(len(vocab), embed=config.embed, hidden=config.hidden, layers=config.layers, seed=init_seed)
        losses = train_lm(model, text, vocab, steps=config.steps, seq_len=config.seq_len, batch_size=config.batch_size, lr=config.lr, seed=train_seed)
        scores = candidate_log_perplexities(model, vocab, prefix, k=k)
        ext = extract_secret(model, vocab, prefix, k=k, beam_width=beam_width)
        results.append(
            CanaryResult(
                canary=canary,
                exposure=exposure(scores, canary.index),
                rank=canary_rank(scores, canary.index),
                max_exposure=math.log2(10**k),
                extracted=ext.secret,
                extracted_ok=ext.secret == secret,
                train_loss=float(np.mean(losses[-50:])),
                model=model,
            )
        )
    return results
