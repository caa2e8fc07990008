"""Unintended memorization: canaries, exposure and extraction from a character LM.

Carlini et al. (2019, "The Secret Sharer") insert a *canary*, a sentence holding a random
secret such as ``"my PIN is 4 8 1 5 9 2"``, ``r`` times into a language model's training text.
They then rank the true secret among all candidate secrets by the model's log-perplexity; the
*exposure* ``log2 |R| - log2 rank`` says how many bits of the secret the model gives away.
Carlini et al. (2021) extract training text from GPT-2 without knowing a prefix: they sample many
generations, rank them by membership metrics (the model's perplexity, alone or relative to zlib's
compressed length or to a second, reference model) and read the top of the ranking.

Everything here is small enough for a CPU: a synthetic template corpus (deterministic by seed),
a one-layer GRU over characters, exact enumeration of all ``10^k`` candidates (batched over a
tree of shared prefixes), beam-search extraction, and batched sampling with ranking for the
2021 attack. The whole canary experiment (one model per
insertion count) is :func:`labkit.experiments.memorization.canary_experiment`, the 2021 attack
:func:`labkit.experiments.memorization.extraction_experiment`; the generalization
gap of classifiers is :func:`labkit.metrics.generalization_gap`.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .train import train_loop
from .utils import device_of, init_from_seed, make_generator

__all__ = [
    "Vocab",
    "Canary",
    "make_canary",
    "make_corpus",
    "LMConfig",
    "CharLM",
    "train_lm",
    "log_perplexity",
    "candidate_log_perplexities",
    "canary_rank",
    "exposure",
    "Extraction",
    "extract_secret",
    "generate",
    "sample_generations",
    "deduplicate",
    "text_log_perplexities",
    "zlib_entropy",
    "MemorizationScores",
    "memorization_scores",
    "GenerationRanking",
    "rank_generations",
    "secrets_in_top",
]

LN2 = math.log(2.0)
DIGITS = "0123456789"


# --------------------------------------------------------------------------------------------
# Text: vocabulary, canaries, synthetic corpus


class Vocab:
    """A fixed character vocabulary: letters, digits, space and a little punctuation.

    Args:
        alphabet: the characters, one token each (default: ASCII letters, digits, ``" .,:'\\n"``).
    """

    DEFAULT = "\n .,:'" + DIGITS + "abcdefghijklmnopqrstuvwxyz" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

    def __init__(self, alphabet: str = DEFAULT) -> None:
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("alphabet must not repeat characters")
        self.alphabet = alphabet
        self.index = {ch: i for i, ch in enumerate(alphabet)}

    def __len__(self) -> int:
        return len(self.alphabet)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text``, int64 ``(len(text),)``."""
        bad = sorted(set(text) - set(self.index))
        if bad:
            raise ValueError(f"text holds characters outside the vocabulary: {bad!r}")
        return torch.tensor([self.index[ch] for ch in text], dtype=torch.int64)

    def decode(self, ids) -> str:
        """The text of token ids ``(T,)``."""
        return "".join(self.alphabet[int(i)] for i in ids)


def _check_secret(secret: str, k: int | None = None) -> str:
    if not isinstance(secret, str) or not secret or any(ch not in DIGITS for ch in secret):
        raise ValueError(f"secret must be a non-empty string of digits, got {secret!r}")
    if k is not None and len(secret) != k:
        raise ValueError(f"secret must have k={k} digits, got {len(secret)}")
    return secret


@dataclass(frozen=True)
class Canary:
    """A canary: a fixed template ``"<prefix> d d d ... d"`` holding a random digit secret.

    Attributes:
        secret: the k digits, e.g. ``"481592"``.
        prefix: the text before the secret (Carlini et al. 2019 use "my social security number is").
        insertions: how many times the canary is put into the training text (r).
    """

    secret: str
    prefix: str = "my PIN is"
    insertions: int = 1

    def __post_init__(self) -> None:
        _check_secret(self.secret)
        if not isinstance(self.insertions, int) or self.insertions < 0:
            raise ValueError(f"insertions must be an int >= 0, got {self.insertions!r}")

    @property
    def k(self) -> int:
        """Number of digits in the secret; the candidate space has ``10^k`` secrets."""
        return len(self.secret)

    def format(self, secret: str | None = None) -> str:
        """The canary sentence with ``secret`` (default: the true one), digits space-separated."""
        s = _check_secret(self.secret if secret is None else secret, self.k)
        return f"{self.prefix} {' '.join(s)}"

    @property
    def text(self) -> str:
        """The canary sentence as inserted, e.g. ``"my PIN is 4 8 1 5 9 2"``."""
        return self.format()

    @property
    def index(self) -> int:
        """The secret read as an integer: its index among the candidates ``0 .. 10^k - 1``."""
        return int(self.secret)


def make_canary(prefix: str = "my PIN is", *, k: int = 6, insertions: int = 1, seed: int | torch.Generator | None = 0) -> Canary:
    """A canary with a uniformly random k-digit secret.

    Args:
        prefix: the template text before the digits.
        k: number of digits (1 to 9).
        insertions: r, the number of copies to insert.
        seed: seed or generator for the secret.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 9:
        raise ValueError(f"k must be an int in [1, 9], got {k!r}")
    gen = make_generator(seed)
    digits = torch.randint(0, 10, (k,), generator=gen)
    return Canary(secret="".join(str(int(d)) for d in digits), prefix=prefix, insertions=insertions)


_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "wendy"]
_ADJS = ["small", "green", "quiet", "old", "happy", "bright", "cold", "heavy", "lazy", "clever"]
_NOUNS = ["cat", "dog", "bird", "river", "garden", "teacher", "robot", "window", "train", "bakery", "market", "letter"]
_VERBS = ["sees", "likes", "follows", "paints", "visits", "finds", "watches", "opens"]
_CITIES = ["paris", "lisbon", "oslo", "cairo", "lima", "delhi", "quito", "tunis"]
_STREETS = ["oak", "pine", "maple", "elm", "cedar", "birch"]


def _digits(gen: torch.Generator, n: int) -> str:
    return " ".join(str(int(d)) for d in torch.randint(0, 10, (n,), generator=gen))


def _pick(gen: torch.Generator, words: Sequence[str]) -> str:
    return words[int(torch.randint(0, len(words), (1,), generator=gen))]


def _sentence(gen: torch.Generator) -> str:
    t = int(torch.randint(0, 8, (1,), generator=gen))
    p = lambda words: _pick(gen, words)  # noqa: E731
    if t == 0:
        return f"the {p(_ADJS)} {p(_NOUNS)} {p(_VERBS)} the {p(_NOUNS)}."
    if t == 1:
        return f"{p(_NAMES)} lives at {_digits(gen, 2)} {p(_STREETS)} street in {p(_CITIES)}."
    if t == 2:
        return f"call {p(_NAMES)} at {_digits(gen, 7)}."
    if t == 3:
        return f"order {_digits(gen, 6)} was shipped to {p(_CITIES)}."
    if t == 4:
        return f"{p(_NAMES)} paid {_digits(gen, 2)} dollars for the {p(_ADJS)} {p(_NOUNS)}."
    if t == 5:
        return f"the meeting is in room {_digits(gen, 3)}."
    if t == 6:
        return f"{p(_NAMES)} and {p(_NAMES)} met in {p(_CITIES)}."
    return f"my {p(_NOUNS)} is {p(_ADJS)} and {p(_ADJS)}."


_FILLER_WORDS = ["ha", "la", "no", "ok", "yes", "0", "1", "9"]


def _filler(gen: torch.Generator) -> str:
    word = _pick(gen, _FILLER_WORDS)
    return " ".join([word] * int(torch.randint(4, 13, (1,), generator=gen))) + "."


def make_corpus(
    n_sentences: int = 500,
    *,
    canaries: Sequence[Canary] = (),
    fillers: int = 0,
    seed: int | torch.Generator | None = 0,
) -> str:
    """Generate a synthetic training text from templates, with canaries inserted.

    Sentences are drawn from eight templates over small word lists; four of them carry random
    digit strings written like the canaries (``"4 8 1"``), so the model learns that digits are
    unpredictable there. ``fillers`` generic, repetitive lines (``"ha ha ha ha ha."``: one word
    repeated 4 to 12 times), the toy's stand-in for the boilerplate that every web corpus shares,
    are mixed in at random positions. Each canary sentence is then inserted ``canary.insertions``
    times at uniformly random sentence positions. One sentence per line.

    Args:
        n_sentences: number of template sentences (canary copies and fillers come on top).
        canaries: the canaries to insert.
        fillers: number of repetitive filler lines (0: none, and the text is the same as without
            the option).
        seed: seed or generator; the same seed gives the same text.

    Returns:
        The corpus as one string, sentences separated by ``"\\n"`` (ending with one).
    """
    if isinstance(n_sentences, bool) or not isinstance(n_sentences, int) or n_sentences < 1:
        raise ValueError(f"n_sentences must be a positive int, got {n_sentences!r}")
    if isinstance(fillers, bool) or not isinstance(fillers, int) or fillers < 0:
        raise ValueError(f"fillers must be an int >= 0, got {fillers!r}")
    gen = make_generator(seed)
    lines = [_sentence(gen) for _ in range(n_sentences)]
    for _ in range(fillers):
        line = _filler(gen)
        lines.insert(int(torch.randint(0, len(lines) + 1, (1,), generator=gen)), line)
    for canary in canaries:
        if not isinstance(canary, Canary):
            raise ValueError(f"canaries must be Canary objects, got {type(canary).__name__}")
        for _ in range(canary.insertions):
            pos = int(torch.randint(0, len(lines) + 1, (1,), generator=gen))
            lines.insert(pos, canary.text)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The language model


@dataclass
class LMConfig:
    """Size and training schedule of the character GRU (the defaults train in about 10 s on one CPU core)."""

    embed: int = 32  # width of the character embedding
    hidden: int = 96  # GRU state width
    layers: int = 1  # stacked GRU layers
    seq_len: int = 32  # length of a training window, in characters (a canary is ~21)
    batch_size: int = 32  # windows per step
    steps: int = 400  # Adam steps (about 20 passes over a 500-sentence corpus)
    lr: float = 3e-3  # Adam learning rate


class CharLM(nn.Module):
    """A character-level GRU language model.

    ``forward(ids, state)`` maps token ids ``(B, T)`` to next-token logits ``(B, T, V)`` and the
    new GRU state ``(layers, B, hidden)``, so that text can be fed in pieces.

    Args:
        vocab_size: number of tokens V.
        embed, hidden, layers: embedding width, GRU width, GRU layers.
        seed: seed or generator of the initial weights (PyTorch's default initialisation schemes,
            :func:`labkit.utils.init_from_seed`).
    """

    def __init__(self, vocab_size: int, *, embed: int = 32, hidden: int = 96, layers: int = 1, seed: int | torch.Generator | None = 0) -> None:
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("embed", embed), ("hidden", hidden), ("layers", layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.vocab_size = vocab_size
        with init_from_seed(seed):
            self.embed = nn.Embedding(vocab_size, embed)
            self.gru = nn.GRU(embed, hidden, num_layers=layers, batch_first=True)
            self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.gru(self.embed(ids), state)  # (B, T, H), (L, B, H)
        return self.head(out), state  # (B, T, V)


def train_lm(
    model: nn.Module,
    text: str,
    vocab: Vocab,
    *,
    steps: int = 400,
    seq_len: int = 32,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int | torch.Generator | None = 0,
) -> list[float]:
    """Train a language model on random windows of ``text`` with next-character cross-entropy.

    Args:
        model: maps ids ``(B, T)`` to ``(logits (B, T, V), state)`` (e.g. :class:`CharLM`).
        text: the training corpus.
        vocab: its vocabulary.
        steps, seq_len, batch_size, lr: Adam steps on ``batch_size`` windows of ``seq_len + 1`` characters.
        seed: seed or generator for the window positions.

    Returns:
        The loss of every step (nats per character).
    """
    if steps < 1 or seq_len < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"steps, seq_len, batch_size must be >= 1 and lr > 0, got {steps}, {seq_len}, {batch_size}, {lr}")
    ids = vocab.encode(text)
    if len(ids) < seq_len + 2:
        raise ValueError(f"text must be longer than seq_len + 1 = {seq_len + 1} characters, got {len(ids)}")
    device = device_of(model)
    ids = ids.to(device)
    gen = make_generator(seed)
    offsets = torch.arange(seq_len + 1, device=device)  # (T+1,)

    def one_window_batch():  # one "pass" of train_loop = one step on a fresh batch of windows
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=gen).to(device)
        return [(ids[starts[:, None] + offsets],)]  # (B, T+1)

    def loss_fn(window: torch.Tensor) -> torch.Tensor:
        logits, _ = model(window[:, :-1])  # (B, T, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1))

    model.train()
    losses = train_loop(model.parameters(), one_window_batch, loss_fn, epochs=steps, lr=lr, max_grad_norm=1.0, desc="training LM")
    model.eval()
    return losses


# --------------------------------------------------------------------------------------------
# Log-perplexity, candidates, rank, exposure


@torch.no_grad()
def log_perplexity(model: nn.Module, vocab: Vocab, texts: str | Sequence[str], *, context: str = "\n", batch_size: int = 4096) -> torch.Tensor:
    """Log-perplexity in bits: ``-sum_i log2 Pr(x_i | context, x_1 .. x_{i-1})`` of each text.

    Args:
        model: maps ids ``(B, T)`` to ``(logits (B, T, V), state)``.
        vocab: the model's vocabulary.
        texts: one string or a list of strings of equal length.
        context: text fed before each one and not scored (default ``"\\n"``, a sentence start
            as in the training corpus). Must be non-empty: the first character needs a context.
        batch_size: most texts per model call.

    Returns:
        float64 tensor ``(N,)`` (``(1,)`` for a single string).

    Reference: Carlini et al. (2019), Definition 1 (log-perplexity).
    """
    if isinstance(texts, str):
        texts = [texts]
    if not texts or not context:
        raise ValueError("texts must be non-empty and context must hold at least one character")
    lengths = {len(t) for t in texts}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"texts must be non-empty strings of equal length, got lengths {sorted(lengths)}")
    device = device_of(model)
    c = len(context)
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        ids = torch.stack([vocab.encode(context + t) for t in texts[start : start + batch_size]]).to(device)  # (b, c + T)
        logits, _ = model(ids[:, :-1])  # (b, c + T - 1, V)
        logp = torch.log_softmax(logits.double(), dim=-1)[:, c - 1 :]  # predictions of the text's tokens (b, T, V)
        out.append(-logp.gather(2, ids[:, c:, None]).squeeze(2).sum(1).cpu() / LN2)
    return torch.cat(out)


@torch.no_grad()
def candidate_log_perplexities(
    model: nn.Module,
    vocab: Vocab,
    prefix: str,
    *,
    k: int,
    context: str = "\n",
    batch_size: int = 65536,
) -> torch.Tensor:
    """Log-perplexity (bits) of the secret part of every candidate ``"<prefix> d d ... d"``.

    Candidate ``i`` is the k-digit string of ``i`` (zero-padded), so index = the secret's
    integer value. The score counts the digits and the spaces between them, given
    ``context + prefix + " "``; the prefix's own log-perplexity is the same for every candidate,
    so ranks equal those of the whole sentence. All ``10^k`` candidates are scored exactly by
    walking the tree of shared digit prefixes level by level (``~1.1 * 10^(k-1)`` model steps
    of two characters, batched) instead of running ``10^k`` full sentences.

    Args:
        model: a recurrent LM ``(ids (B, T), state) -> (logits (B, T, V), state)`` whose state
            has the batch in dimension 1, like ``torch.nn.GRU``'s ``(layers, B, H)``.
        vocab: its vocabulary (must hold the digits and the space).
        prefix: the canary template's text before the digits.
        k: number of digits (1 to 7; ``10^k`` values are returned).
        context: text fed first (default ``"\\n"``).
        batch_size: most sequences per model call.

    Returns:
        float64 tensor ``(10^k,)``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 7:
        raise ValueError(f"k must be an int in [1, 7] (10^k candidates are enumerated), got {k!r}")
    device = device_of(model)
    model.eval()
    digit_ids = vocab.encode(DIGITS).to(device)  # (10,)
    space = int(vocab.encode(" ")[0])
    ids = vocab.encode(context + prefix + " ").to(device)[None]  # (1, L)
    logits, state = model(ids)
    logp = torch.log_softmax(logits[:, -1].double(), dim=-1)  # (1, V): next token after the space
    scores = torch.zeros(1, dtype=torch.float64, device=device)  # bits so far, one per tree node
    for level in range(k):
        n = scores.shape[0]
        scores = (scores[:, None] - logp[:, digit_ids] / LN2).reshape(-1)  # (n * 10,), index = parent * 10 + digit
        if level == k - 1:
            break
        # feed "digit space" for every child: logits give p(space | ...) and p(next digit | ...)
        inp = torch.stack([digit_ids.repeat(n), torch.full((n * 10,), space, device=device)], dim=1)  # (n*10, 2)
        parent_state = state.repeat_interleave(10, dim=1)  # (layers, n*10, H)
        next_logp, next_state = [], []
        for s in range(0, n * 10, batch_size):
            out, st = model(inp[s : s + batch_size], parent_state[:, s : s + batch_size].contiguous())
            lp = torch.log_softmax(out.double(), dim=-1)  # (b, 2, V)
            scores[s : s + batch_size] -= lp[:, 0, space] / LN2
            next_logp.append(lp[:, 1])
            next_state.append(st)
        logp = torch.cat(next_logp)  # (n*10, V)
        state = torch.cat(next_state, dim=1)  # (layers, n*10, H)
    return scores.cpu()


def _as_scores(log_perplexities) -> torch.Tensor:
    s = log_perplexities if isinstance(log_perplexities, torch.Tensor) else torch.as_tensor(np.asarray(log_perplexities))
    if s.dim() != 1 or s.numel() == 0 or not s.is_floating_point():
        raise ValueError(f"log_perplexities must be a non-empty float tensor of shape (|R|,), got {s.dtype} of shape {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("log_perplexities must be finite")
    return s


def canary_rank(log_perplexities, secret_index: int) -> int:
    """Rank of the secret among all candidates: 1 + the number with strictly lower log-perplexity.

    Carlini et al. count candidates with lower *or equal* log-perplexity, so ties count against the
    canary there and in its favour here; with float scores ties are rare.

    Args:
        log_perplexities: float ``(|R|,)``, one per candidate secret.
        secret_index: position of the true secret in that tensor.

    Returns:
        An int in ``[1, |R|]`` (1: the model prefers the true secret to every other candidate).

    Reference: Carlini et al. (2019), the definition of rank.
    """
    s = _as_scores(log_perplexities)
    if isinstance(secret_index, bool) or not isinstance(secret_index, (int, np.integer)) or not 0 <= secret_index < len(s):
        raise ValueError(f"secret_index must be an int in [0, {len(s) - 1}], got {secret_index!r}")
    return 1 + int((s < s[int(secret_index)]).sum())


def exposure(log_perplexities, secret_index: int) -> float:
    """Exposure of a canary: ``log2 |R| - log2 rank`` bits.

    Args:
        log_perplexities: float ``(|R|,)``, the log-perplexity of every candidate secret.
        secret_index: position of the inserted secret in that tensor.

    Returns:
        A float in ``[0, log2 |R|]``: ``log2 |R|`` when the canary ranks first, and about 1/ln 2 = 1.44 bits
        on average for a secret the model has never seen (its rank is then uniform).

    Reference: Carlini et al. (2019), the definition of exposure.
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    s = _as_scores(log_perplexities)
    return math.log2(len(s)) - math.log2(canary_rank(s, secret_index))
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Extraction by decoding


@dataclass
class Extraction:
    """What :func:`extract_secret` returns.

    Attributes:
        secret: the decoded digits (the best beam).
        log_perplexity: its log-perplexity in bits (digits and spaces, given the prefix).
        beams: all final beams as ``(secret, log_perplexity)``, best first.
    """

    secret: str
    log_perplexity: float
    beams: list[tuple[str, float]] = field(default_factory=list)


@torch.no_grad()
def extract_secret(model: nn.Module, vocab: Vocab, prefix: str, *, k: int, beam_width: int = 1, context: str = "\n") -> Extraction:
    """Decode a k-digit secret after ``prefix`` by greedy (``beam_width=1``) or beam search.

    The search runs over the canary's format: at each digit position every one of the 10 digits
    is tried, and the fixed space after it is scored too, so the result is the candidate of
    least log-perplexity that the beam finds (with ``beam_width >= 10^k`` it is the exact arg-min
    of :func:`candidate_log_perplexities`).

    Args:
        model: a recurrent LM, as in :func:`candidate_log_perplexities`.
        vocab: its vocabulary.
        prefix: the text before the secret, e.g. ``"my PIN is"``.
        k: number of digits to decode.
        beam_width: beams kept after each digit.
        context: text fed first.

    Returns:
        :class:`Extraction`.

    Reference: Carlini et al. (2019), Section 8 (extraction by shortest-path search);
    Carlini et al. (2021), Section 4 (generation from a prefix).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise ValueError(f"beam_width must be a positive int, got {beam_width!r}")
    device = device_of(model)
    model.eval()
    digit_ids = vocab.encode(DIGITS).to(device)
    space = int(vocab.encode(" ")[0])
    logits, state = model(vocab.encode(context + prefix + " ").to(device)[None])
    logp = torch.log_softmax(logits[:, -1].double(), dim=-1)  # (1, V)
    scores = torch.zeros(1, dtype=torch.float64, device=device)  # (B,) bits
    seqs = torch.zeros(1, 0, dtype=torch.int64, device=device)  # (B, j) digit values
    for level in range(k):
        cand = (scores[:, None] - logp[:, digit_ids] / LN2).reshape(-1)  # (B*10,)
        if level < k - 1:  # the space after this digit belongs to the format: score it too
            n = scores.shape[0]
            inp = torch.stack([digit_ids.repeat(n), torch.full((n * 10,), space, device=device)], dim=1)
            out, st = model(inp, state.repeat_interleave(10, dim=1))
            lp = torch.log_softmax(out.double(), dim=-1)  # (B*10, 2, V)
            cand = cand - lp[:, 0, space] / LN2
        keep = torch.argsort(cand, stable=True)[:beam_width]  # (B',)
        parent, digit = keep // 10, keep % 10
        seqs = torch.cat([seqs[parent], digit[:, None]], dim=1)
        scores = cand[keep]
        if level < k - 1:
            logp, state = lp[keep, 1], st[:, keep]
    beams = ["".join(str(int(d)) for d in s) for s in seqs.cpu()]
    return Extraction(secret=beams[0], log_perplexity=float(scores[0]), beams=list(zip(beams, [float(v) for v in scores.cpu()])))


@torch.no_grad()
def generate(model: nn.Module, vocab: Vocab, prompt: str, *, n_chars: int = 40, greedy: bool = True, seed: int | torch.Generator | None = 0, context: str = "\n") -> str:
    """Continue ``prompt`` by ``n_chars`` characters, greedily or by sampling.

    Args:
        greedy: take the most likely character each time; otherwise sample, drawing from ``seed``.
        seed: seed or generator of the sampling (unused when greedy).

    Returns:
        The generated continuation only (without the prompt).
    """
    if n_chars < 1:
        raise ValueError(f"n_chars must be >= 1, got {n_chars}")
    gen = None if greedy else make_generator(seed)
    device = device_of(model)
    model.eval()
    logits, state = model(vocab.encode(context + prompt).to(device)[None])
    out = []
    for _ in range(n_chars):
        p = torch.softmax(logits[0, -1].double(), dim=-1).cpu()
        nxt = int(p.argmax()) if greedy else int(torch.multinomial(p, 1, generator=gen))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]], device=device), state)
    return vocab.decode(out)


# --------------------------------------------------------------------------------------------
# Extraction without a prefix: sample, deduplicate, rank by membership metrics (Carlini et al. 2021)


@torch.no_grad()
def sample_generations(
    model: nn.Module,
    vocab: Vocab,
    n: int,
    *,
    length: int = 48,
    temperature: float = 1.0,
    prompt: str = "",
    context: str = "\n",
    stop: str | None = "\n",
    seed: int | torch.Generator | None = 0,
    batch_size: int = 1024,
) -> list[str]:
    """Draw ``n`` texts from a language model by temperature sampling, ``batch_size`` at a time.

    Every sample continues ``context + prompt``: the model reads it once, its state is copied to
    the whole batch, and each step draws one character per row from
    ``softmax(logits / temperature)``. A sample ends before its first ``stop`` character (for the
    corpus of :func:`make_corpus`, ``"\\n"`` ends a sentence) or after ``length`` characters.

    Args:
        model: a recurrent LM ``(ids (B, T), state) -> (logits (B, T, V), state)`` whose state has
            the batch in dimension 1, like ``torch.nn.GRU``'s ``(layers, B, H)``.
        vocab: its vocabulary.
        n: number of samples.
        length: most characters generated per sample (after the prompt).
        temperature: > 0; 1 samples the model's own distribution, lower values sharpen it
            (towards greedy decoding), higher ones flatten it.
        prompt: text every sample starts with (part of the returned text; default none).
        context: text fed before the prompt and not returned (default ``"\\n"``, a sentence start).
        stop: a character that ends a sample (not returned), or None for samples of exactly
            ``length`` characters.
        seed: seed or generator of the draws; the same seed gives the same samples.
        batch_size: samples drawn in parallel.

    Returns:
        ``n`` strings, ``prompt`` followed by at most ``length`` generated characters (possibly
        just the prompt, when the first draw is ``stop``), in the order drawn.

    Reference: Carlini et al. (2021), Sections 4.1 and 5.1 (generating many samples; they sample
    GPT-2 with top-k = 40 from an empty prompt, with a decaying temperature, and from web-text prompts).
    """
    for name, v in (("n", n), ("length", length), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not context + prompt:
        raise ValueError("context + prompt must hold at least one character: the first draw needs a context")
    if stop is not None and (not isinstance(stop, str) or len(stop) != 1 or stop not in vocab.index):
        raise ValueError(f"stop must be one character of the vocabulary or None, got {stop!r}")
    gen = make_generator(seed)
    device = device_of(model)
    model.eval()
    logits, state = model(vocab.encode(context + prompt).to(device)[None])  # (1, L, V), (layers, 1, H)
    stop_id = vocab.index[stop] if stop is not None else -1
    out: list[str] = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        last = logits[:, -1].expand(b, -1)  # (b, V)
        st = state.expand(-1, b, -1).contiguous()  # (layers, b, H)
        rows = torch.empty(b, length, dtype=torch.int64)  # (b, length), drawn ids
        done = torch.zeros(b, dtype=torch.bool)
        steps = 0
        for t in range(length):
            p = torch.softmax(last.double() / temperature, dim=-1).cpu()  # (b, V)
            nxt = torch.multinomial(p, 1, generator=gen)  # (b, 1)
            rows[:, t] = nxt[:, 0]
            steps = t + 1
            done |= nxt[:, 0] == stop_id
            if bool(done.all()):
                break
            step_logits, st = model(nxt.to(device), st)  # (b, 1, V)
            last = step_logits[:, -1]
        for row in rows[:, :steps].tolist():
            if stop_id in row:
                row = row[: row.index(stop_id)]
            out.append(prompt + vocab.decode(row))
    return out


def deduplicate(texts: Sequence[str]) -> list[str]:
    """The distinct non-empty texts, each at its first position (exact matching).

    Carlini et al. (2021, Section 6.1) deduplicate the top of each ranking (by trigram overlap, a
    fuzzy match that this toy does not need); we drop exact repeats before ranking, so that a string
    generated many times is one candidate.
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    return list(dict.fromkeys(t for t in texts if t))


@torch.no_grad()
def text_log_perplexities(model: nn.Module, vocab: Vocab, texts: Sequence[str], *, context: str = "\n", batch_size: int = 4096) -> torch.Tensor:
    """Log-perplexity in bits of texts of any lengths (:func:`log_perplexity`, one call per length).

    Args:
        model, vocab, context, batch_size: as in :func:`log_perplexity`.
        texts: non-empty strings, of any lengths.

    Returns:
        float64 tensor ``(N,)``, in the order of ``texts``.
    """
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError("texts must be a non-empty sequence of non-empty strings")
    out = torch.empty(len(texts), dtype=torch.float64)
    by_length: dict[int, list[int]] = {}
    for i, t in enumerate(texts):
        by_length.setdefault(len(t), []).append(i)
    for idx in by_length.values():
        out[idx] = log_perplexity(model, vocab, [texts[i] for i in idx], context=context, batch_size=batch_size)
    return out


def zlib_entropy(texts: str | Sequence[str]) -> torch.Tensor:
    """zlib entropy: the length in bits of each text (UTF-8) compressed by ``zlib.compress``.

    A text-only yardstick of how much information a string holds: repetitive strings compress
    well and get few bits, random ones (digits, rare names) many. Short strings pay a fixed
    overhead (about 8 bytes of zlib header and checksum), the same for every text.

    Args:
        texts: one string or a sequence of strings.

    Returns:
        float64 tensor ``(N,)`` (``(1,)`` for a single string).

    Reference: Carlini et al. (2021), Section 5.2 ("Comparing to zlib compression").
    """
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts) or not texts:
        raise ValueError("texts must be a string or a non-empty sequence of strings")
    return torch.tensor([8.0 * len(zlib.compress(t.encode("utf-8"))) for t in texts], dtype=torch.float64)


@dataclass
class MemorizationScores:
    """Membership scores of N generated texts, one float64 tensor ``(N,)`` per metric.

    Larger means more likely memorized (a training sequence). A metric is None when its input was
    not given.

    Attributes:
        perplexity: minus the target's log-perplexity per character (bits).
        zlib: minus the ratio of the target's log-perplexity to the zlib entropy.
        reference: minus the ratio of the target's log-perplexity to the reference model's.
    """

    perplexity: torch.Tensor
    zlib: torch.Tensor
    reference: torch.Tensor | None = None

    METRICS = ("perplexity", "zlib", "reference")

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``{metric: scores}`` for the metrics that were computed, in the order of ``METRICS``."""
        return {m: getattr(self, m) for m in self.METRICS if getattr(self, m) is not None}


def _bits(x, name: str, n: int | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() != 1 or t.numel() == 0 or (n is not None and t.numel() != n):
        want = f"({n},)" if n is not None else "(N,) with N >= 1"
        raise ValueError(f"{name} must be a 1-D tensor of shape {want}, got shape {tuple(t.shape)}")
    t = t.double()
    if not torch.isfinite(t).all() or not (t > 0).all():
        raise ValueError(f"{name} must hold finite values > 0 (bits, characters), got min {float(t.min())!r}")
    return t


def memorization_scores(
    log_perplexity,
    *,
    lengths,
    zlib_bits,
    reference_log_perplexity=None,
) -> MemorizationScores:
    """Membership scores of generated texts: perplexity, and its ratios to zlib and to a reference model.

    Perplexity alone favours text that is easy for *any* model (repetitive, generic text); each
    ratio divides the target's log-perplexity by a second measure of how easy the text is, so that
    what remains is how much *more* the target likes it: the zlib entropy (a compressor's view),
    or a reference model trained on other data (what is merely common, or easy for any LM). All
    scores are negated so that larger means more likely memorized.

    Args:
        log_perplexity: float ``(N,)``, the target's log-perplexity of each text in bits (> 0).
        lengths: ``(N,)``, the number of characters of each text (> 0).
        zlib_bits: float ``(N,)``, the zlib entropy of each text in bits (> 0).
        reference_log_perplexity: float ``(N,)`` (> 0) under the reference model, or None.

    Returns:
        :class:`MemorizationScores` with ``perplexity = -log_perplexity / lengths``,
        ``zlib = -log_perplexity / zlib_bits`` and ``reference = -log_perplexity / reference_log_perplexity``
        (float64 ``(N,)``; ``reference`` is None when its input is).

    Reference: Carlini et al. (2021), Section 5.2 (the perplexity, Small and zlib metrics; their
    Lowercase metric does not apply to this corpus, whose only capitals are in a canary). Their
    samples all have 256 tokens, so a per-token or a total log-perplexity rank the same; ours differ
    in length, and the total keeps both terms of the zlib ratio proportional to it.
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    lp = _bits(log_perplexity, "log_perplexity")
    n = lp.numel()
    scores = MemorizationScores(perplexity=-lp / _bits(lengths, "lengths", n), zlib=-lp / _bits(zlib_bits, "zlib_bits", n))
    if reference_log_perplexity is not None:
        scores.reference = -lp / _bits(reference_log_perplexity, "reference_log_perplexity", n)
    return scores
    ### END SOLUTION


@dataclass
class GenerationRanking:
    """What :func:`rank_generations` returns: the distinct texts, their measurements and scores.

    Attributes:
        texts: the N distinct generations, in the order first drawn.
        log_perplexity: float64 ``(N,)``, the target's log-perplexity in bits.
        zlib_bits: float64 ``(N,)``, the zlib entropy in bits.
        reference_log_perplexity: float64 ``(N,)`` under the reference model (None without one).
        scores: :class:`MemorizationScores`, larger = more likely memorized.
    """

    texts: list[str]
    log_perplexity: torch.Tensor
    zlib_bits: torch.Tensor
    reference_log_perplexity: torch.Tensor | None
    scores: MemorizationScores

    def order(self, metric: str) -> torch.Tensor:
        """Indices of the texts by decreasing ``metric`` score (ties: first drawn first), int64 ``(N,)``."""
        s = self.scores.as_dict()
        if metric not in s:
            raise ValueError(f"metric must be one of {list(s)}, got {metric!r}")
        return torch.argsort(s[metric], descending=True, stable=True)

    def top(self, metric: str, k: int) -> list[str]:
        """The ``k`` texts with the highest ``metric`` score, best first."""
        return [self.texts[i] for i in self.order(metric)[:k].tolist()]


@torch.no_grad()
def rank_generations(
    model: nn.Module,
    vocab: Vocab,
    texts: Sequence[str],
    *,
    reference: nn.Module | None = None,
    context: str = "\n",
    batch_size: int = 4096,
) -> GenerationRanking:
    """Deduplicate generated texts and score them by every membership metric of Carlini et al. (2021).

    Args:
        model: the target LM (the one whose training data is sought).
        vocab: its vocabulary (and the reference's).
        texts: the generations, e.g. from :func:`sample_generations`; empty strings are dropped.
        reference: a second LM trained on other data (the paper's "Small" model), or None.
        context: text fed before each one when scoring (default ``"\\n"``).
        batch_size: most texts per model call.

    Returns:
        :class:`GenerationRanking`.

    Reference: Carlini et al. (2021), Sections 5.2 and 6.1 (sort by each metric, deduplicate).
    """
    texts = deduplicate(texts)
    if not texts:
        raise ValueError("texts must hold at least one non-empty string")
    lp = text_log_perplexities(model, vocab, texts, context=context, batch_size=batch_size)
    ref = text_log_perplexities(reference, vocab, texts, context=context, batch_size=batch_size) if reference is not None else None
    zl = zlib_entropy(texts)
    lengths = torch.tensor([len(t) for t in texts], dtype=torch.float64)
    scores = memorization_scores(lp, lengths=lengths, zlib_bits=zl, reference_log_perplexity=ref)
    return GenerationRanking(texts, lp, zl, ref, scores)


def secrets_in_top(texts: Sequence[str], scores, secrets: Sequence[str], *, ks: Sequence[int] = (10, 50, 100)) -> torch.Tensor:
    """How many of the secrets appear among the k best-scored texts, for each k.

    Texts are sorted by decreasing score (ties: the earlier text first); a secret counts once,
    when at least one of the top k texts contains it verbatim (as a substring). A k larger than the
    number of texts counts over all of them.

    Args:
        texts: N generated texts.
        scores: float ``(N,)``, one membership score per text (larger = more likely memorized).
        secrets: the strings sought (e.g. the canaries' sentences), non-empty.
        ks: the cut-offs k (positive ints).

    Returns:
        int64 tensor ``(len(ks),)``: entry j is the number of distinct secrets found in the top ``ks[j]``.

    Reference: Carlini et al. (2021), Section 6 (the number of memorized samples among the top
    100 of each metric).
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    s = scores if isinstance(scores, torch.Tensor) else torch.as_tensor(np.asarray(scores, dtype=np.float64))
    if s.dim() != 1 or s.numel() != len(texts):
        raise ValueError(f"scores must have shape ({len(texts)},), one per text, got {tuple(s.shape)}")
    if isinstance(secrets, str) or not all(isinstance(x, str) and x for x in secrets):
        raise ValueError("secrets must be a sequence of non-empty strings")
    if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"ks must be positive ints, got {list(ks)!r}")
    order = torch.argsort(s.double(), descending=True, stable=True).tolist()
    unique = list(dict.fromkeys(secrets))
    first = {}  # secret -> the best rank (0-based) of a text that contains it
    for rank, i in enumerate(order):
        for secret in unique:
            if secret not in first and secret in texts[i]:
                first[secret] = rank
    return torch.tensor([sum(r < k for r in first.values()) for k in ks], dtype=torch.int64)
    ### END SOLUTION
