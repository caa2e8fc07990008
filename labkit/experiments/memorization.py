"""Memorization experiments on the character LM, printed by the book's Chapter 3 and Lab 3.

* :func:`canary_experiment`: Carlini et al. (2019), one model per insertion count r, each trained
  on a corpus that holds the canary r times, measured by rank, exposure and extraction.
* :func:`extraction_experiment`: Carlini et al. (2021), a target model trained with several
  canaries and a reference model trained without them; the target is sampled, the samples are
  ranked by each membership metric and the canaries counted in the top k.
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
    GenerationRanking,
    candidate_log_perplexities,
    exposure,
    extract_secret,
    make_canary,
    make_corpus,
    rank_generations,
    sample_generations,
    secrets_in_top,
    train_lm,
)
from ..utils import make_generator

__all__ = ["CanaryResult", "canary_experiment", "ExtractionScenario", "extraction_scenario", "ExtractionResult", "extraction_experiment"]


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


def _train(config: LMConfig, text: str, vocab: Vocab, init_seed: int, train_seed: int) -> tuple[CharLM, float]:
    """A CharLM of ``config`` trained on ``text``, and its mean loss over the last 50 steps."""
    model = CharLM(len(vocab), embed=config.embed, hidden=config.hidden, layers=config.layers, seed=init_seed)
    losses = train_lm(model, text, vocab, steps=config.steps, seq_len=config.seq_len, batch_size=config.batch_size, lr=config.lr, seed=train_seed)
    return model, float(np.mean(losses[-50:]))


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
        model, train_loss = _train(config, text, vocab, init_seed, train_seed)
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
                train_loss=train_loss,
                model=model,
            )
        )
    return results


# --------------------------------------------------------------------------------------------
# Extraction by sampling and ranking (Carlini et al. 2021)

# the canaries' templates: each a different kind of secret, none of them a template of the corpus
SECRET_PREFIXES = ("my PIN is", "the door code is", "my card number is", "the safe code is",
                   "my locker is", "the alarm code is", "my account is", "the wifi key is")


@dataclass
class ExtractionScenario:
    """A target LM trained with canaries, a reference LM trained without, and samples of the target."""

    vocab: Vocab
    canaries: list[Canary]  # the secrets inserted into the target's corpus
    target: CharLM = field(repr=False)  # trained on template sentences + fillers + canaries
    reference: CharLM = field(repr=False)  # smaller, trained on another draw of sentences + fillers, no canary
    generations: list[str] = field(repr=False)  # samples of the target, as drawn (with repeats)
    target_loss: float  # mean training loss of the last 50 steps (nats per character)
    reference_loss: float

    @property
    def secrets(self) -> list[str]:
        """The canaries' sentences, the strings sought among the generations."""
        return [c.text for c in self.canaries]


def extraction_scenario(
    *,
    n_canaries: int = 8,
    insertions: int = 8,
    k: int = 5,
    n_sentences: int = 500,
    fillers: int = 150,
    n_samples: int = 4000,
    length: int = 64,
    temperature: float = 1.0,
    config: LMConfig | None = None,
    reference_config: LMConfig | None = None,
    seed: int | torch.Generator | None = 0,
) -> ExtractionScenario:
    """Train the target and the reference LM and sample the target (the attack's first step).

    The target's corpus holds ``n_sentences`` template sentences, ``fillers`` repetitive lines
    (generic text that every corpus shares, :func:`labkit.memorization.make_corpus`) and
    ``n_canaries`` canaries with different templates (``"my PIN is"``, ``"the door code is"``, ...)
    and random k-digit secrets, each inserted ``insertions`` times. The reference is a smaller LM
    trained on another draw of the same kind of text (the same number of fillers) without any
    canary. The target is sampled ``n_samples`` times from a sentence start, one sentence each.

    Args:
        n_canaries: number of secrets (1 to 8).
        insertions: copies of each canary in the target's corpus (0: a target that never saw them).
        k: digits per secret.
        n_sentences, fillers: the corpora's template sentences and filler lines.
        n_samples, length, temperature: :func:`labkit.memorization.sample_generations`.
        config: the target's size and schedule (default: 128 GRU units, 1000 steps).
        reference_config: the reference's (default: 48 units, 300 steps).
        seed: drives the secrets, both corpora, initializations, training windows and samples.

    Returns:
        :class:`ExtractionScenario`.
    """
    if isinstance(n_canaries, bool) or not isinstance(n_canaries, int) or not 1 <= n_canaries <= len(SECRET_PREFIXES):
        raise ValueError(f"n_canaries must be an int in [1, {len(SECRET_PREFIXES)}], got {n_canaries!r}")
    config = config or LMConfig(hidden=128, steps=1000)
    reference_config = reference_config or LMConfig(hidden=48, steps=300)
    vocab = Vocab()
    gen = make_generator(seed)
    canaries = [make_canary(prefix, k=k, insertions=insertions, seed=gen) for prefix in SECRET_PREFIXES[:n_canaries]]
    seeds = torch.randint(0, 2**31, (7,), generator=gen).tolist()
    target, target_loss = _train(config, make_corpus(n_sentences, canaries=canaries, fillers=fillers, seed=seeds[0]), vocab, seeds[1], seeds[2])
    reference, reference_loss = _train(reference_config, make_corpus(n_sentences, fillers=fillers, seed=seeds[3]), vocab, seeds[4], seeds[5])
    generations = sample_generations(target, vocab, n_samples, length=length, temperature=temperature, seed=seeds[6])
    return ExtractionScenario(vocab, canaries, target, reference, generations, target_loss, reference_loss)


@dataclass
class ExtractionResult:
    """What :func:`extraction_experiment` returns."""

    scenario: ExtractionScenario
    ranking: GenerationRanking  # the distinct generations with their scores
    ks: tuple[int, ...]  # the cut-offs k
    found: dict[str, list[int]]  # metric -> secrets found in the top k, one count per k
    generated: int  # secrets that occur anywhere among the generations (the most any metric can find)

    def rows(self) -> list[dict]:
        """One table row per metric: the secrets found in the top k for each k."""
        n = len(self.scenario.canaries)
        return [{"metric": m, **{f"top {k}": f"{c}/{n}" for k, c in zip(self.ks, counts)}, "anywhere": f"{self.generated}/{n}"}
                for m, counts in self.found.items()]


def extraction_experiment(*, ks: Sequence[int] = (10, 50, 100), seed: int | torch.Generator | None = 0, **scenario_options) -> ExtractionResult:
    """Extract training data in the manner of Carlini et al. (2021) and count the secrets found.

    Runs :func:`extraction_scenario`, deduplicates and ranks the generations by perplexity, the
    zlib ratio and the reference ratio (:func:`labkit.memorization.rank_generations`), and counts
    for each metric the canaries among the top k generations
    (:func:`labkit.memorization.secrets_in_top`).

    Args:
        ks: the cut-offs k.
        seed: the scenario's seed (the only randomness: ranking and counting are deterministic).
        scenario_options: passed on to :func:`extraction_scenario` (``insertions``, ``n_samples``, ...).

    Returns:
        :class:`ExtractionResult`.
    """
    sc = extraction_scenario(seed=seed, **scenario_options)
    ranking = rank_generations(sc.target, sc.vocab, sc.generations, reference=sc.reference)
    found = {m: secrets_in_top(ranking.texts, s, sc.secrets, ks=ks).tolist() for m, s in ranking.scores.as_dict().items()}
    generated = int(secrets_in_top(ranking.texts, ranking.log_perplexity, sc.secrets, ks=(len(ranking.texts),))[0])
    return ExtractionResult(sc, ranking, tuple(ks), found, generated)
