"""Training data for shadow models when the attacker has no real records from the population.

Shokri et al. (2017, Section V-C) give three ways to obtain the shadow models' training data
besides a real disjoint pool:

* **model-based synthesis**, :func:`synthesize` (the paper's Algorithm 1, SYNTHESIZE): a hill
  climb over records that queries the target model ``f_target`` until it classifies a record as
  class ``c`` with high confidence, then samples that record. :func:`synthesize_batch` advances many
  such chains per oracle call;
* **statistics-based synthesis**, :func:`marginal_synthesis`: every feature drawn independently
  from its own (per-class) marginal distribution;
* **noisy real data**, :func:`noisy_data`: real records with a fraction of their binary features
  flipped.

Records are flat binary feature vectors (the Purchase setting: "did the customer buy product j").
Every random draw comes from the ``seed`` argument (an int or a ``torch.Generator``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..data import Data
from ..oracle import Oracle
from ..utils import check_int, make_generator, outputs_of, progress

__all__ = [
    "rand_record",
    "synthesize",
    "SynthesisResult",
    "synthesize_batch",
    "marginal_synthesis",
    "noisy_data",
]


# --------------------------------------------------------------------------- RANDRECORD
def rand_record(
    d: int,
    *,
    x_star: torch.Tensor | None = None,
    k: int | None = None,
    p_one: float = 0.5,
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """RANDRECORD of Algorithm 1: a random binary record, or ``x_star`` with k features re-drawn.

    Args:
        d: number of features.
        x_star: the record to start from, float ``(d,)`` of 0/1 values; ``None`` draws a fresh
            record (line 2 of Algorithm 1).
        k: how many features of ``x_star`` to randomize (line 24); required with ``x_star``.
        p_one: probability that a freshly drawn feature is 1.
        seed: seed or generator of every random draw.

    Returns:
        float32 ``(d,)`` with 0/1 values. With ``x_star``, k distinct positions chosen uniformly
        get fresh Bernoulli(``p_one``) values, so the result differs from ``x_star`` in at most k
        features (a re-drawn feature can keep its old value).

    Draw order (shared with :func:`synthesize_batch`): a fresh record uses one ``rand(d)``; a
    randomization uses ``rand(d)`` keys for the positions (those of the k smallest keys) then
    ``rand(d)`` for the values.

    Shokri et al. (2017), Algorithm 1, RANDRECORD.
    """
    check_int("d", d, minimum=1)
    _check_p_one(p_one)
    gen = make_generator(seed)
    if x_star is None:
        if k is not None:
            raise ValueError("k is only used together with x_star (RANDRECORD(x*, k))")
        return (torch.rand(d, generator=gen) < p_one).float()
    if not isinstance(x_star, torch.Tensor) or tuple(x_star.shape) != (d,):
        raise ValueError(f"x_star must be a tensor of shape ({d},), got {getattr(x_star, 'shape', type(x_star).__name__)}")
    check_int("k", k, minimum=1)
    if k > d:
        raise ValueError(f"k must be at most d = {d}, got {k}")
    positions = torch.rand(d, generator=gen).topk(k, largest=False).indices  # the k smallest of d keys: k distinct features
    values = (torch.rand(d, generator=gen) < p_one).float()
    x = x_star.detach().clone().float()
    x[positions] = values[positions]
    return x


# --------------------------------------------------------------------------- SYNTHESIZE
def synthesize(
    oracle: Oracle,
    c: int,
    *,
    k_max: int,
    k_min: int = 1,
    conf_min: float,
    rej_max: int,
    iter_max: int,
    p_one: float = 0.5,
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor | None:
    """SYNTHESIZE(c): hill-climb to a record that ``f_target`` puts in class ``c`` with confidence.

    One chain, one query per iteration, exactly as the lecture's Algorithm 1:
    start from RANDRECORD(); query ``y = f_target(x)``; if ``y_c >= y_c*`` accept (and, when
    ``y_c > conf_min`` and ``c = argmax(y)``, return ``x`` with probability ``y_c``), setting
    ``x* = x``, ``y_c* = y_c``, ``j = 0``; otherwise count a reject, and once ``j > rej_max``
    halve ``k = max(k_min, ceil(k / 2))`` and reset ``j``; then ``x = RANDRECORD(x*, k)``.

    Args:
        oracle: the target's prediction API; it must answer probability vectors (not labels).
            Every iteration costs one query, counted by ``oracle.queries``.
        c: the class to synthesize a record for.
        k_max: features randomized per step at first.
        k_min: the fewest features randomized per step.
        conf_min: confidence ``y_c`` must exceed before a record may be returned.
        rej_max: consecutive rejects tolerated; the ``(rej_max + 1)``-th halves ``k``
            (line 19 tests ``j > rej_max``).
        iter_max: the most queries (iterations) before giving up.
        p_one: probability that a randomized binary feature is 1 (0.5: no knowledge).
        seed: seed or generator of every random draw (records, positions, the sampling coin).

    Returns:
        float32 tensor of shape ``oracle.input_shape`` holding 0/1 values, or ``None`` (the
        algorithm's bottom) when no record was returned within ``iter_max`` queries.

    Shokri et al. (2017), "Membership Inference Attacks Against Machine Learning Models",
    Section V-C, Algorithm 1.
    """
    ### BEGIN SOLUTION lab4a_membership
    d = _check_synthesis_args(oracle, k_max=k_max, k_min=k_min, conf_min=conf_min, rej_max=rej_max, iter_max=iter_max, p_one=p_one)
    _check_class(c, oracle.n_classes)
    gen = make_generator(seed)
    x = rand_record(d, p_one=p_one, seed=gen)  # line 2
    x_star = x
    y_star = 0.0  # line 3
    j = 0  # line 4
    k = k_max  # line 5
    for _ in range(iter_max):  # line 6
        y = _query_probs(oracle, x[None])[0]  # line 7, (C,)
        y_c = float(y[c])
        if y_c >= y_star:  # line 8: accept
            if y_c > conf_min and int(y.argmax()) == c:  # line 9
                if float(torch.rand(1, generator=gen)) < y_c:  # line 10: sample
                    return x.reshape(oracle.input_shape)  # line 11
            x_star, y_star, j = x, y_c, 0  # lines 14-16
        else:
            j += 1  # line 18
            if j > rej_max:  # line 19
                k = max(k_min, math.ceil(k / 2))  # line 20
                j = 0  # line 21
        x = rand_record(d, x_star=x_star, k=k, p_one=p_one, seed=gen)  # line 24
    return None  # line 26
    ### END SOLUTION


@dataclass
class SynthesisResult:
    """What :func:`synthesize_batch` returns: one entry per chain.

    Attributes:
        x: float32 ``(n, d)``; row i is chain i's record, zeros where it failed.
        classes: int64 ``(n,)``, the class ``c`` each chain aimed at.
        success: bool ``(n,)``, whether the chain returned a record (False: bottom).
        queries: int64 ``(n,)``, the oracle queries each chain used.
        oracle_calls: number of batched calls made to the oracle.
    """

    x: torch.Tensor
    classes: torch.Tensor
    success: torch.Tensor
    queries: torch.Tensor
    oracle_calls: int

    @property
    def n_records(self) -> int:
        """Number of records synthesized."""
        return int(self.success.sum())

    @property
    def queries_per_record(self) -> float:
        """All queries spent (failed chains included) per synthesized record (inf if none)."""
        n = self.n_records
        return float(self.queries.sum()) / n if n else math.inf

    def data(self, n_classes: int, *, name: str = "synthetic") -> Data:
        """The successful records as :class:`~labkit.data.Data`, labelled with their class c."""
        ok = self.success
        return Data(self.x[ok], self.classes[ok], n_classes, name)

    @classmethod
    def concat(cls, parts: "list[SynthesisResult]") -> "SynthesisResult":
        """The chains of several results, one after another, as one result."""
        if not parts:
            raise ValueError("concat needs at least one SynthesisResult, got none")
        return cls(
            x=torch.cat([p.x for p in parts]),
            classes=torch.cat([p.classes for p in parts]),
            success=torch.cat([p.success for p in parts]),
            queries=torch.cat([p.queries for p in parts]),
            oracle_calls=sum(p.oracle_calls for p in parts),
        )


def synthesize_batch(
    oracle: Oracle,
    classes: torch.Tensor,
    *,
    k_max: int,
    k_min: int = 1,
    conf_min: float,
    rej_max: int,
    iter_max: int,
    p_one: float = 0.5,
    seed: int | torch.Generator | None = 0,
    desc: str = "SYNTHESIZE",
) -> SynthesisResult:
    """Run one SYNTHESIZE chain per entry of ``classes``, advancing all live chains per oracle call.

    Each chain follows :func:`synthesize` step for step; the chains only share the oracle call
    of an iteration (one batch holding every live chain's current record) and the generator.
    A chain stops when it returns a record or after ``iter_max`` of its own queries. With a
    single chain the draws are the same as :func:`synthesize`'s, so the same generator state
    gives the same record and the same number of queries.

    Args:
        oracle: the target's prediction API (probability vectors); it counts every record queried.
        classes: int64 ``(n,)``, the class each chain synthesizes.
        k_max, k_min, conf_min, rej_max, iter_max, p_one: as in :func:`synthesize`.
        seed: seed or generator of every random draw.
        desc: label of the progress bar.

    Returns:
        :class:`SynthesisResult` (records, success mask, queries per chain).

    Shokri et al. (2017), Algorithm 1, vectorized over chains.
    """
    ### BEGIN SOLUTION lab4a_membership synthesize
    d = _check_synthesis_args(oracle, k_max=k_max, k_min=k_min, conf_min=conf_min, rej_max=rej_max, iter_max=iter_max, p_one=p_one)
    classes = torch.as_tensor(classes)
    if classes.dim() != 1 or classes.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"classes must be a 1-D integer tensor (one class per chain), got {classes.dtype} of shape {tuple(classes.shape)}")
    classes = classes.long().cpu()
    if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= oracle.n_classes):
        raise ValueError(f"classes must lie in [0, {oracle.n_classes - 1}], got values in [{int(classes.min())}, {int(classes.max())}]")
    gen = make_generator(seed)
    n = classes.numel()
    out = torch.zeros(n, d)
    success = torch.zeros(n, dtype=torch.bool)
    queries = torch.zeros(n, dtype=torch.int64)
    # State of the live chains (rows follow `live`, the chain ids still running).
    live = torch.arange(n)
    x = (torch.rand(n, d, generator=gen) < p_one).float()  # line 2, (n, d)
    x_star = x.clone()
    y_star = torch.zeros(n, dtype=torch.float64)  # line 3
    j = torch.zeros(n, dtype=torch.int64)  # line 4
    k = torch.full((n,), k_max, dtype=torch.int64)  # line 5
    calls = 0
    for _ in progress(range(iter_max), desc=desc):  # line 6
        if live.numel() == 0:
            break
        y = _query_probs(oracle, x).double()  # line 7, (m, C)
        calls += 1
        queries[live] += 1
        c = classes[live]
        y_c = y.gather(1, c[:, None])[:, 0]  # (m,)
        accept = y_c >= y_star  # line 8
        ready = accept & (y_c > conf_min) & (y.argmax(dim=1) == c)  # line 9
        done = torch.zeros_like(accept)
        if ready.any():  # line 10: one coin per ready chain, in chain order
            coin = torch.rand(int(ready.sum()), generator=gen).double()
            done[ready] = coin < y_c[ready]
        out[live[done]] = x[done]  # line 11
        success[live[done]] = True
        keep = accept & ~done  # lines 14-16
        x_star[keep] = x[keep]
        y_star[keep] = y_c[keep]
        j[keep] = 0
        rej = ~accept  # lines 17-22
        j[rej] += 1
        halve = rej & (j > rej_max)
        k[halve] = torch.clamp((k[halve] + 1) // 2, min=k_min)
        j[halve] = 0
        # Drop finished chains, then randomize k features of x* for the others (line 24).
        stay = ~done
        live, x_star, y_star, j, k = live[stay], x_star[stay], y_star[stay], j[stay], k[stay]
        m = live.numel()
        if m == 0:
            break
        # positions of the k_max smallest of d uniform keys, in increasing key order; the first k are chosen
        order = torch.rand(m, d, generator=gen).topk(k_max, dim=1, largest=False, sorted=True).indices  # (m, k_max)
        chosen = torch.zeros(m, d, dtype=torch.bool).scatter_(1, order, torch.arange(k_max) < k[:, None])
        values = (torch.rand(m, d, generator=gen) < p_one).float()
        x = torch.where(chosen, values, x_star)
    return SynthesisResult(x=out, classes=classes, success=success, queries=queries, oracle_calls=calls)
    ### END SOLUTION


# --------------------------------------------------------------------------- statistics, noise
def marginal_synthesis(data: Data, n: int, *, seed: int | torch.Generator | None = 0) -> Data:
    """Statistics-based synthesis: each feature drawn independently from its class marginal.

    A record of class c gets, for every feature j independently, the value of feature j in a
    uniformly chosen record of class c of ``data``. Each feature's per-class distribution (for
    binary features: its frequency of ones) is kept; correlations between features are lost.
    Labels follow the class proportions of ``data``.

    Args:
        data: the records whose statistics the attacker knows (flat features ``(N, d)``).
        n: number of records to generate.
        seed: seed or generator of every random draw.

    Returns:
        :class:`~labkit.data.Data` of ``n`` records with ``data.n_classes`` classes.

    Shokri et al. (2017), Section V-C, "statistics-based synthesis".
    """
    ### BEGIN SOLUTION lab4a_membership
    check_int("n", n, minimum=1)
    if data.x.dim() != 2 or len(data) == 0:
        raise ValueError(f"data must hold flat records (N, d) with N >= 1, got shape {tuple(data.x.shape)}")
    gen = make_generator(seed)
    x_src, y_src = data.x.cpu(), data.y.cpu()
    d = x_src.shape[1]
    y = y_src[torch.randint(0, len(y_src), (n,), generator=gen)]  # (n,) labels in data's proportions
    x = torch.empty(n, d)
    cols = torch.arange(d)
    for c in torch.unique(y).tolist():
        rows_c = (y_src == c).nonzero().squeeze(1)  # records of class c
        out_c = (y == c).nonzero().squeeze(1)
        pick = rows_c[torch.randint(0, len(rows_c), (len(out_c), d), generator=gen)]  # (n_c, d)
        x[out_c] = x_src[pick, cols]
    return Data(x, y, data.n_classes, f"{data.name}/marginal")
    ### END SOLUTION


def noisy_data(data: Data, *, fraction: float, seed: int | torch.Generator | None = 0) -> Data:
    """Noisy real data: flip ``round(fraction * d)`` randomly chosen binary features of each record.

    Args:
        data: binary records ``(N, d)`` (0/1 values).
        fraction: share of the features to flip in every record, in ``[0, 1]`` (the paper uses
            0.1 and 0.2).
        seed: seed or generator of every random draw.

    Returns:
        :class:`~labkit.data.Data` with the same labels; each record differs from its source in
        exactly ``round(fraction * d)`` features.

    Shokri et al. (2017), Section V-C, "noisy real data".
    """
    ### BEGIN SOLUTION lab4a_membership
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    x_src = data.x
    if x_src.dim() != 2:
        raise ValueError(f"data must hold flat records (N, d), got shape {tuple(x_src.shape)}")
    if not torch.all((x_src == 0) | (x_src == 1)):
        raise ValueError("noisy_data flips binary features: data.x must hold only 0/1 values")
    gen = make_generator(seed)
    n, d = x_src.shape
    n_flip = int(round(fraction * d))
    rank = torch.rand(n, d, generator=gen).argsort(dim=1, stable=True).argsort(dim=1, stable=True)
    flip = (rank < n_flip).to(x_src.device)  # (n, d), n_flip True per row
    x = torch.where(flip, 1 - x_src, x_src)
    return Data(x, data.y, data.n_classes, f"{data.name}/noisy{fraction:g}")
    ### END SOLUTION


# --------------------------------------------------------------------------- helpers
def _query_probs(oracle: Oracle, x: torch.Tensor) -> torch.Tensor:
    """Query the oracle with flat records ``(m, d)``; return ``(m, C)`` probabilities on the CPU."""
    y = outputs_of(oracle, x.reshape(x.shape[0], *oracle.input_shape), name="oracle")
    if y.dim() != 2:
        raise ValueError("SYNTHESIZE needs probability vectors; this oracle answers labels only")
    return y.cpu()


def _check_p_one(p_one: float) -> None:
    if not 0 <= p_one <= 1:
        raise ValueError(f"p_one must lie in [0, 1], got {p_one}")


def _check_class(c, n_classes: int) -> None:
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n_classes:
        raise ValueError(f"c must be a class index in [0, {n_classes - 1}], got {c!r}")


def _check_synthesis_args(oracle, *, k_max, k_min, conf_min, rej_max, iter_max, p_one) -> int:
    """Validate SYNTHESIZE's parameters; return the number of features d."""
    if not hasattr(oracle, "input_shape") or not hasattr(oracle, "n_classes"):
        raise ValueError(f"oracle must be a labkit.oracle.Oracle (with input_shape and n_classes), got {type(oracle).__name__}")
    if getattr(getattr(oracle, "policy", None), "output", "probs") == "label":
        raise ValueError("SYNTHESIZE needs probability vectors, got an oracle with output='label'")
    d = math.prod(oracle.input_shape)
    check_int("k_min", k_min, minimum=1)
    check_int("k_max", k_max, minimum=k_min)
    if k_max > d:
        raise ValueError(f"k_max must be at most the number of features {d}, got {k_max}")
    check_int("rej_max", rej_max, minimum=0)
    check_int("iter_max", iter_max, minimum=1)
    if not 0 <= conf_min <= 1:
        raise ValueError(f"conf_min must lie in [0, 1], got {conf_min}")
    _check_p_one(p_one)
    return d
