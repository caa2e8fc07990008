"""Model extraction through a prediction API: fidelity vs accuracy, equation solving, surrogates.

Three pieces, in the order of the lecture's recap and of Lab 1:

* **Goals.** :func:`extraction_scores` measures an extracted model ``f_hat`` against the oracle
  ``f_oracle`` and the ground truth: *accuracy* (what a thief who wants a cheap classifier cares
  about) and *fidelity* (agreement with the oracle, what a reconnaissance attacker needs).
  :func:`make_fidelity_toy` builds the 2-D picture of Jagielski et al. (2020), Figure 1.
* **Equation solving** (Tramer et al. 2016, Section 4.1). A logistic regression that returns
  probabilities leaks one linear equation per class and query, ``log p_i - log p_0 = (w_i - w_0).x
  + (b_i - b_0)``; ``d + 1`` well-placed queries determine the model.
  :func:`solve_logreg_equations` is the linear algebra, :func:`solve_logreg` the attack.
* **Learning-based extraction** (Copycat, Correia-Silva et al. 2018; Knockoff Nets, Orekondy et
  al. 2019). :func:`train_surrogate` labels a pool of unlabeled inputs with the oracle and fits a
  surrogate on the answers; :func:`budget_sweep` measures accuracy and fidelity against the
  number of queries for several output policies.

Attacks see the victim only through :class:`labkit.oracle.Oracle`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .metrics import accuracy, fidelity
from .models import LogisticRegression
from .oracle import Oracle, OutputPolicy
from .train import fit, predict, soft_targets
from .utils import (
    as_features,
    as_labels,
    device_of,
    labels_of,
    make_generator,
    progress,
    reset_parameters_,
    spawn_seed,
)

__all__ = [
    "ExtractionScores",
    "extraction_scores",
    "FidelityToy",
    "make_fidelity_toy",
    "ExtractedLogReg",
    "solve_logreg_equations",
    "logreg_queries",
    "solve_logreg",
    "SurrogateResult",
    "train_surrogate",
    "budget_sweep",
]


# --------------------------------------------------------------------------------------------
# Goals of extraction: accuracy vs fidelity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractionScores:
    """How good an extracted model is, in the two senses of Jagielski et al. (2020).

    Attributes:
        accuracy: fraction of points where ``f_hat`` predicts the true label.
        fidelity: fraction of points where ``f_hat`` predicts the oracle's label.
    """

    accuracy: float
    fidelity: float


def extraction_scores(
    f_hat: Callable[[torch.Tensor], torch.Tensor],
    f_oracle: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
) -> ExtractionScores:
    """Accuracy and fidelity of an extracted model on labelled points.

    Args:
        f_hat: the extracted model, a callable mapping inputs ``(N, ...)`` to labels int64 ``(N,)``
            or to scores/probabilities ``(N, C)`` (the arg-max is taken); an ``nn.Module`` works.
        f_oracle: the victim, same kind of callable. Use the victim model itself, not a counting
            :class:`~labkit.oracle.Oracle`, so that evaluation does not spend the attack's budget.
        x: evaluation inputs ``(N, ...)``, drawn from the task's distribution.
        y: true labels int64 ``(N,)``.

    Returns:
        :class:`ExtractionScores`: accuracy ``mean(f_hat(x) == y)`` and fidelity
        ``mean(f_hat(x) == f_oracle(x))``.

    Jagielski et al. (2020), Section 3: accuracy is the thief's goal, fidelity (up to functional
    equivalence, fidelity 1 on every input) is the goal of an attacker preparing further attacks.
    """
    ### BEGIN SOLUTION lab1_extraction
    x = as_features(x, name="x")
    y = as_labels(y, name="y", n=x.shape[0]).cpu()
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one point, got an empty batch")
    pred = labels_of(f_hat, x, name="f_hat")
    ref = labels_of(f_oracle, x, name="f_oracle")
    return ExtractionScores(accuracy=accuracy(pred, y), fidelity=fidelity(pred, ref))
    ### END SOLUTION


def _linear_classifier(w: Sequence[float], b: float) -> LogisticRegression:
    """A binary labkit LogisticRegression with hand-set weights (predicts 1 where w.x + b > 0)."""
    model = LogisticRegression(len(w), 2)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([list(w)], dtype=torch.float32))
        model.linear.bias.fill_(b)
    return model.eval()


@dataclass
class FidelityToy:
    """The 2-D toy of Jagielski et al. (2020), Figure 1: data, an oracle and two extractions.

    Every classifier is a binary labkit :class:`~labkit.models.LogisticRegression` with hand-set
    weights, so its decision boundary is the line ``w.x + b = 0`` (``model.linear``).

    Attributes:
        x: the data points, float32 ``(N, 2)`` in ``[-1, 1]^2``.
        y: their true labels, int64 ``(N,)``.
        oracle: the victim; it misclassifies ``n_mistakes`` of the points.
        high_fidelity: a different line that agrees with the oracle on every data point (and so
            shares its mistakes) but not everywhere in the plane.
        high_accuracy: a line that classifies every data point correctly, hence disagrees with
            the oracle exactly where the oracle errs.
    """

    x: torch.Tensor
    y: torch.Tensor
    oracle: LogisticRegression
    high_fidelity: LogisticRegression
    high_accuracy: LogisticRegression


def make_fidelity_toy(n: int = 40, *, n_mistakes: int = 4, margin: float = 0.05, seed: int | torch.Generator | None = 0) -> FidelityToy:
    """Sample the points of the fidelity-vs-accuracy picture (Jagielski et al. 2020, Figure 1).

    The three boundaries are fixed lines: the oracle ``x2 = 0``, the high-fidelity extraction
    ``x2 = 0.6 x1`` and the true rule (also the high-accuracy extraction) ``x2 = 0.25 - 0.5 x1``.
    Points are uniform in ``[-1, 1]^2``, at least ``margin`` from every line, outside the wedge
    where the oracle and the high-fidelity line disagree; ``n_mistakes`` of them lie where the
    oracle and the truth disagree.

    Args:
        n: number of points N.
        n_mistakes: how many points the oracle misclassifies (``0 <= n_mistakes <= n``).
        margin: minimum distance of a point to each line.
        seed: seed or generator.

    Returns:
        :class:`FidelityToy`. On its points the oracle has accuracy ``1 - n_mistakes / n``, the
        high-fidelity line fidelity 1 and the same accuracy, the high-accuracy line accuracy 1
        and fidelity ``1 - n_mistakes / n``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(n_mistakes, int) or not 0 <= n_mistakes <= n:
        raise ValueError(f"n_mistakes must be an int in [0, n={n}], got {n_mistakes!r}")
    if not 0 <= margin < 0.2:
        raise ValueError(f"margin must lie in [0, 0.2), got {margin!r}")
    oracle = _linear_classifier((0.0, 1.0), 0.0)
    high_fidelity = _linear_classifier((-0.6, 1.0), 0.0)
    high_accuracy = _linear_classifier((0.5, 1.0), -0.25)
    gen = make_generator(seed)

    def score(model: LogisticRegression, x: torch.Tensor) -> torch.Tensor:
        w = model.linear.weight[0].detach()
        return (x @ w + model.linear.bias.detach()) / w.norm()  # signed distance to the line

    want = {True: n_mistakes, False: n - n_mistakes}  # True: oracle wrong
    got: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    while any(sum(len(t) for t in got[k]) < want[k] for k in got):
        cand = torch.rand(4 * n + 64, 2, generator=gen) * 2 - 1  # (M, 2)
        s_o, s_f, s_t = score(oracle, cand), score(high_fidelity, cand), score(high_accuracy, cand)
        clear = (s_o.abs() > margin) & (s_f.abs() > margin) & (s_t.abs() > margin) & ((s_o > 0) == (s_f > 0))
        wrong = (s_o > 0) != (s_t > 0)
        for k in (True, False):
            got[k].append(cand[clear & (wrong == k)])
    mistakes = torch.cat(got[True])[:n_mistakes]
    rest = torch.cat(got[False])[: n - n_mistakes]
    x = torch.cat([rest, mistakes])[torch.randperm(n, generator=gen)]  # (N, 2)
    y = (score(high_accuracy, x) > 0).long()
    return FidelityToy(x=x, y=y, oracle=oracle, high_fidelity=high_fidelity, high_accuracy=high_accuracy)


# --------------------------------------------------------------------------------------------
# Equation-solving extraction of logistic regression (Tramer et al. 2016, Section 4.1)
# --------------------------------------------------------------------------------------------


@dataclass
class ExtractedLogReg:
    """Parameters of a logistic regression recovered by equation solving.

    Softmax is unchanged when the same vector is added to every class's weights (and the same
    number to every bias), so only differences to a reference class are identifiable. We fix the
    shift by setting class 0's row to zero: a multinomial model is returned as ``weight[0] = 0``,
    ``bias[0] = 0``, ``weight[i] = w_i - w_0``, ``bias[i] = b_i - b_0``. A binary model (labkit's
    ``LogisticRegression`` with ``n_classes == 2``, logits ``[0, w.x + b]``) is already in that
    form and is returned as its single row ``w``, ``b``.

    Attributes:
        weight: float64 ``(1, d)`` for a binary model, ``(C, d)`` with ``weight[0] == 0`` otherwise.
        bias: float64 ``(1,)`` or ``(C,)`` with ``bias[0] == 0``.
        n_classes: C.
        queries: number of records (equations) the solve used.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    n_classes: int
    queries: int

    @property
    def binary(self) -> bool:
        """True for the binary (sigmoid) form with one weight row."""
        return self.n_classes == 2 and self.weight.shape[0] == 1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits float64 ``(N, C)`` on inputs ``(N, d)`` (for a binary model ``[0, w.x + b]``)."""
        x = as_features(x, name="x", shape=(self.weight.shape[1],), dtype=torch.float64).to(self.weight.device)
        z = x @ self.weight.T + self.bias  # (N, 1) or (N, C)
        if self.binary:
            z = torch.cat([torch.zeros_like(z), z], dim=1)
        return z

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities float64 ``(N, C)``, computed in float64 from the recovered parameters."""
        return torch.softmax(self.logits(x), dim=1)

    def model(self) -> LogisticRegression:
        """A labkit :class:`~labkit.models.LogisticRegression` (float32) with these parameters."""
        d = self.weight.shape[1]
        model = LogisticRegression(d, self.n_classes)
        with torch.no_grad():
            if model.binary:
                model.linear.weight.copy_(self.weight[-1:].float())
                model.linear.bias.copy_(self.bias[-1:].float())
            else:
                model.linear.weight.copy_(self.weight.float())
                model.linear.bias.copy_(self.bias.float())
        return model.to(self.weight.device).eval()


def solve_logreg_equations(x: torch.Tensor, probs: torch.Tensor, *, min_prob: float | None = None) -> ExtractedLogReg:
    """Recover logistic-regression parameters from inputs and the probabilities returned on them.

    For a softmax model, ``log p_i(x) - log p_0(x) = (w_i - w_0).x + (b_i - b_0)``: every query
    gives ``C - 1`` equations that are linear in the unknowns. With ``[x, 1]`` stacked into
    ``A`` (N, d+1) and the log-ratios into ``T`` (N, C-1), the unknowns solve ``A theta = T``.
    ``N = d + 1`` points in general position determine them exactly; with more (noisy, e.g.
    rounded) answers the least-squares solution is returned. For a binary model the single
    equation is ``logit(p_1) = w.x + b``. Everything is computed in float64.

    Args:
        x: query points ``(N, d)`` (exactly the values the oracle saw).
        probs: the oracle's answers ``(N, C)``, ``C >= 2``. Rows need not sum exactly to 1
            (rounded answers), since only ratios are used.
        min_prob: probabilities below it are raised to it before the logarithm (needed when
            rounding returned zeros). None: any zero probability is an error.

    Returns:
        :class:`ExtractedLogReg` normalised so that class 0 has weight 0 and bias 0 (binary:
        one row). ``queries`` is N.

    Raises:
        ValueError: on labels instead of probabilities (label-only outputs give no equations),
            on mismatched shapes, on fewer than ``d + 1`` points, on query points that do not
            span the affine space (rank of ``[x, 1]`` below ``d + 1``), or on zero
            probabilities without ``min_prob``.

    Tramer et al. (2016), Section 4.1.1 (binary) and 4.1.2 (multiclass logistic regression).
    """
    ### BEGIN SOLUTION lab1_extraction
    if isinstance(probs, torch.Tensor) and probs.dim() == 1:
        raise ValueError(
            f"probs must be probability vectors of shape (N, C); got a 1-D tensor of shape {tuple(probs.shape)}, "
            "which looks like label-only answers: labels give no equations, so equation solving is impossible "
            "(use a learning-based attack such as train_surrogate instead)"
        )
    x = as_features(x, name="x", dtype=torch.float64)
    if x.dim() != 2:
        raise ValueError(f"x must be flat query points of shape (N, d), got shape {tuple(x.shape)}")
    if not isinstance(probs, torch.Tensor):
        probs = torch.as_tensor(probs)
    if probs.dim() != 2 or not probs.is_floating_point():
        raise ValueError(f"probs must be a float tensor of shape (N, C), got {probs.dtype} of shape {tuple(probs.shape)}")
    n, d = x.shape
    if probs.shape[0] != n:
        raise ValueError(f"probs must have one row per query point: x has {n} rows, probs has {probs.shape[0]}")
    c = probs.shape[1]
    if c < 2:
        raise ValueError(f"probs must have at least 2 classes (columns), got {c}")
    if n < d + 1:
        raise ValueError(f"equation solving needs at least d + 1 = {d + 1} query points for d = {d} features, got {n}")
    p = probs.detach().to("cpu", torch.float64)
    if not torch.isfinite(p).all() or (p < 0).any() or (p > 1 + 1e-6).any():
        raise ValueError("probs must hold probabilities in [0, 1]")
    if min_prob is not None:
        if not 0 < min_prob < 1:
            raise ValueError(f"min_prob must lie in (0, 1), got {min_prob!r}")
        p = p.clamp_min(min_prob)
    elif (p <= 0).any():
        raise ValueError(
            "probs contains zeros, whose logarithm is -inf (rounded or top-k answers?); "
            "pass min_prob (e.g. half the rounding unit) to clamp them"
        )
    xc = x.detach().to("cpu")
    a = torch.cat([xc, torch.ones(n, 1, dtype=torch.float64)], dim=1)  # (N, d+1)
    rank = int(torch.linalg.matrix_rank(a))
    if rank < d + 1:
        raise ValueError(f"the query points must span the input space: [x, 1] has rank {rank}, need d + 1 = {d + 1}")
    t = torch.log(p[:, 1:]) - torch.log(p[:, :1])  # (N, C-1) log-ratios to class 0
    theta = torch.linalg.lstsq(a, t, driver="gelsd").solution  # (d+1, C-1)
    w, b = theta[:d].T, theta[d]  # (C-1, d), (C-1,)
    if c > 2:
        w = torch.cat([torch.zeros(1, d, dtype=torch.float64), w])  # class 0 is the reference
        b = torch.cat([torch.zeros(1, dtype=torch.float64), b])
    dev = x.device
    return ExtractedLogReg(weight=w.contiguous().to(dev), bias=b.contiguous().to(dev), n_classes=c, queries=n)
    ### END SOLUTION


def logreg_queries(
    n_queries: int,
    input_shape: Sequence[int],
    *,
    low: float = 0.0,
    high: float = 1.0,
    design: str = "orthogonal",
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Random query points in the box ``[low, high]^d`` for equation solving.

    Args:
        n_queries: number of points N (``>= 1``).
        input_shape: shape of one input (``(d,)``, or an image shape that is flattened).
        low, high: the input range.
        design: ``"orthogonal"`` (default): the centre of the box, then the centre plus ``h``
            times the rows of random orthogonal matrices (one new matrix per ``d`` points), with
            ``h`` as large as the box allows. The differences between the first ``d + 1`` points
            are orthogonal, so the system is well conditioned. ``"uniform"``: i.i.d. uniform
            points (a random square system is often badly conditioned: with float32 answers and
            d = 64 we measured parameter errors from 1e-6 to 5e-5).
        seed: seed or generator of the query points (``None``: a fresh seed from the OS).

    Returns:
        float32 ``(N, *input_shape)``.
    """
    if not isinstance(n_queries, int) or isinstance(n_queries, bool) or n_queries < 1:
        raise ValueError(f"n_queries must be a positive int, got {n_queries!r}")
    if not high > low:
        raise ValueError(f"the input range needs low < high, got low={low}, high={high}")
    if design not in ("orthogonal", "uniform"):
        raise ValueError(f"design must be 'orthogonal' or 'uniform', got {design!r}")
    gen = make_generator(seed)
    d = math.prod(input_shape)
    if design == "uniform":
        x = low + (high - low) * torch.rand(n_queries, d, generator=gen, dtype=torch.float64)
    else:
        centre, half = (low + high) / 2, (high - low) / 2
        blocks = [torch.full((1, d), centre, dtype=torch.float64)]
        for _ in range(math.ceil((n_queries - 1) / d)):
            q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))  # random orthogonal
            blocks.append(centre + half / q.abs().max() * q.T)  # (d, d): rows stay inside the box
        x = torch.cat(blocks)[:n_queries]
    return x.float().reshape(n_queries, *input_shape)


def solve_logreg(
    oracle: Oracle,
    *,
    n_queries: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
    design: str = "orthogonal",
    seed: int | torch.Generator | None = 0,
) -> ExtractedLogReg:
    """Extract a logistic regression behind a probability API by equation solving.

    Queries ``n_queries`` random points (:func:`logreg_queries`) and solves for the parameters
    with :func:`solve_logreg_equations`. With exact (float32) probabilities, ``d + 1`` queries
    give a functionally equivalent copy; on 8x8 digits (d = 64, C = 10) we measured a maximum
    probability difference below 1e-6 on fresh inputs. If the API rounds its answers and some
    probabilities come back as 0, they are clamped to half the smallest positive answer seen
    (the middle of the rounding interval ``[0, unit/2)``); more queries then average the rounding
    error out by least squares. An API with a temperature T is recovered as its own logits
    divided by T, i.e. exactly the function it serves.

    Args:
        oracle: the victim API; must return probabilities (``output="probs"``).
        n_queries: number of queries; default ``d + 1``, the minimum.
        low, high: the input range the queries are drawn from.
        design: query design, see :func:`logreg_queries`.
        seed: seed or generator of the query points (``None``: a fresh seed from the OS).

    Returns:
        :class:`ExtractedLogReg` (class 0 normalised to zero; see its docstring) with
        ``queries`` the number of records this call sent to the oracle.

    Raises:
        ValueError: on a label-only oracle (checked before any query is spent), or
            ``n_queries < d + 1``.

    Tramer et al. (2016), Section 4.1; rounding: Section 7 ("rounding confidences").
    """
    ### BEGIN SOLUTION lab1_extraction
    if not isinstance(oracle, Oracle):
        raise ValueError(f"oracle must be a labkit.oracle.Oracle, got {type(oracle).__name__}")
    if oracle.policy.output == "label":
        raise ValueError(
            "equation solving needs probability outputs, but this oracle answers with labels only "
            "(output='label'): a label carries no log-ratio, so there are no equations to solve; "
            "use a learning-based attack (train_surrogate) instead"
        )
    if oracle.policy.top_k is not None and oracle.policy.top_k < oracle.n_classes:
        raise ValueError(
            f"equation solving needs every class's probability, but this oracle keeps only the top "
            f"{oracle.policy.top_k} of {oracle.n_classes} (top_k={oracle.policy.top_k}): the zeroed classes "
            "give no equations; use a learning-based attack (train_surrogate) instead"
        )
    d = math.prod(oracle.input_shape)
    if n_queries is None:
        n_queries = d + 1
    if not isinstance(n_queries, int) or isinstance(n_queries, bool) or n_queries < d + 1:
        raise ValueError(f"n_queries must be an int >= d + 1 = {d + 1}, got {n_queries!r}")
    x = logreg_queries(n_queries, oracle.input_shape, low=low, high=high, design=design, seed=seed)
    before = oracle.queries
    probs = oracle(x)  # (N, C) float32
    if probs.dim() != 2:
        raise ValueError(f"equation solving needs probability vectors (N, C) from the oracle, got shape {tuple(probs.shape)}")
    positive = probs[probs > 0]
    min_prob = None if bool((probs > 0).all()) else 0.5 * float(positive.min())
    result = solve_logreg_equations(x.reshape(n_queries, d), probs, min_prob=min_prob)
    result.queries = oracle.queries - before
    return result
    ### END SOLUTION


# --------------------------------------------------------------------------------------------
# Learning-based extraction: Copycat / Knockoff-style surrogates
# --------------------------------------------------------------------------------------------


@dataclass
class SurrogateResult:
    """What :func:`train_surrogate` returns.

    Attributes:
        model: the trained surrogate (the module passed in, trained in place, in eval mode).
        queries: records sent to the oracle by this call.
        x_queried: the pool points that were queried, ``(n_queries, *input_shape)``.
        answers: the oracle's answers on them: float ``(n_queries, C)`` probabilities, or
            int64 ``(n_queries,)`` labels for a label-only oracle.
    """

    model: nn.Module
    queries: int
    x_queried: torch.Tensor
    answers: torch.Tensor


def train_surrogate(
    oracle: Oracle,
    x_pool: torch.Tensor,
    surrogate: nn.Module,
    *,
    n_queries: int | None = None,
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int | torch.Generator | None = 0,
) -> SurrogateResult:
    """Steal a model by training a surrogate on the oracle's answers to unlabeled pool inputs.

    ``n_queries`` pool points are drawn at random (a permutation from ``seed``, so a larger
    budget with the same seed queries a superset) and sent to the oracle in one batch. The
    surrogate is trained with cross-entropy on the answers: soft targets (the probability vectors,
    renormalised if rounding or top-k broke their sum) when the oracle returns probabilities,
    hard labels when it is label-only.

    Args:
        oracle: the victim API.
        x_pool: the attacker's unlabeled inputs ``(M, *input_shape)``, e.g. natural data from
            the same domain (Copycat) or from another one (Knockoff).
        surrogate: a freshly initialised model returning logits ``(N, C)``; trained in place.
        n_queries: how many pool points to query (default: all of them).
        epochs, batch_size, lr: Adam training of the surrogate (:func:`labkit.train.fit`).
        seed: the pool permutation is ``torch.randperm(M, generator=make_generator(seed))`` and the
            training is ``fit(..., seed=seed)``, as Lab 1 asks.

    Returns:
        :class:`SurrogateResult`.

    Correia-Silva et al. (2018), Copycat CNN (hard labels of non-problem-domain images);
    Orekondy et al. (2019), Knockoff Nets (soft answers, random selection strategy).
    """
    ### BEGIN SOLUTION lab1_extraction
    if not isinstance(oracle, Oracle):
        raise ValueError(f"oracle must be a labkit.oracle.Oracle, got {type(oracle).__name__}")
    if not isinstance(surrogate, nn.Module):
        raise ValueError(f"surrogate must be a torch nn.Module returning logits, got {type(surrogate).__name__}")
    x_pool = as_features(x_pool, name="x_pool", shape=oracle.input_shape)
    m = x_pool.shape[0]
    if n_queries is None:
        n_queries = m
    if not isinstance(n_queries, int) or isinstance(n_queries, bool) or not 1 <= n_queries <= m:
        raise ValueError(f"n_queries must be an int in [1, {m}] (the pool size), got {n_queries!r}")
    n_sur = getattr(surrogate, "n_classes", None)
    if n_sur is not None and n_sur != oracle.n_classes:
        raise ValueError(f"surrogate must have the oracle's {oracle.n_classes} classes, got n_classes={n_sur}")
    gen = make_generator(seed)
    idx = torch.randperm(m, generator=gen)[:n_queries]
    x_q = x_pool[idx]  # (n, *input_shape)
    before = oracle.queries
    answers = oracle(x_q)
    queries = oracle.queries - before
    targets = answers if answers.dim() == 1 else soft_targets(answers)
    dev = device_of(surrogate)
    fit(surrogate, x_q.to(dev), targets.to(dev), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, desc="surrogate")  # the lab's recipe
    return SurrogateResult(model=surrogate.eval(), queries=queries, x_queried=x_q, answers=answers)
    ### END SOLUTION


def _policy_name(policy: OutputPolicy) -> str:
    if policy.output == "label":
        return "label"
    extras = [f"{k}={getattr(policy, k)}" for k in ("top_k", "decimals") if getattr(policy, k) is not None]
    if policy.temperature != 1.0:
        extras.append(f"temperature={policy.temperature}")
    return "probs" + (f"({', '.join(extras)})" if extras else "")


def budget_sweep(
    victim: nn.Module,
    x_pool: torch.Tensor,
    make_surrogate: Callable[[], nn.Module],
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    *,
    budgets: Sequence[int],
    outputs: Sequence[str | OutputPolicy] = ("probs", "label"),
    epochs: int = 60,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int | torch.Generator | None = 0,
) -> list[dict]:
    """Accuracy and fidelity of learning-based extraction against the query budget.

    For every output policy and budget, a fresh surrogate is stolen with :func:`train_surrogate`
    through a fresh :class:`~labkit.oracle.Oracle` around ``victim`` and scored on the test set.
    The same ``seed`` is used for every budget, so larger budgets query supersets of the points
    of smaller ones.

    Args:
        victim: the target model (wrapped in an oracle; the attack never touches it directly).
        x_pool: attacker's unlabeled inputs ``(M, ...)``.
        make_surrogate: builds a fresh surrogate; its initial weights are then re-drawn from
            ``seed`` with :func:`labkit.utils.reset_parameters_`, so every setting starts from the
            same initialisation, which the seed controls.
        x_test, y_test: held-out data from the task's distribution, for accuracy and fidelity.
        budgets: query budgets, each in ``[1, M]``.
        outputs: output policies: ``"probs"``, ``"label"`` or :class:`~labkit.oracle.OutputPolicy`.
        epochs, batch_size, lr, seed: passed to :func:`train_surrogate`.

    Returns:
        One dict per (output, budget): ``budget``, ``output`` (a name such as ``"probs"``,
        ``"label"`` or ``"probs(decimals=2)"``), ``queries`` (records the oracle answered),
        ``accuracy`` and ``fidelity`` on the test set.

    Orekondy et al. (2019), Section 6 (accuracy against budget); Jagielski et al. (2020) (fidelity).
    """
    ### BEGIN SOLUTION lab1_extraction
    if not isinstance(victim, nn.Module):
        raise ValueError(f"victim must be a torch nn.Module, got {type(victim).__name__}")
    if not callable(make_surrogate):
        raise ValueError(f"make_surrogate must be a callable returning a fresh model, got {type(make_surrogate).__name__}")
    budgets = list(budgets)
    if not budgets or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in budgets):
        raise ValueError(f"budgets must be a non-empty list of positive ints, got {budgets!r}")
    policies = []
    for out in outputs:
        if isinstance(out, OutputPolicy):
            policies.append(out)
        elif out in ("probs", "label"):
            policies.append(OutputPolicy(output=out))
        else:
            raise ValueError(f"each output must be 'probs', 'label' or an OutputPolicy, got {out!r}")
    if not policies:
        raise ValueError("outputs must name at least one output policy")
    x_test = as_features(x_test, name="x_test")
    y_test = as_labels(y_test, name="y_test", n=x_test.shape[0])
    victim_labels = predict(victim, x_test).cpu()
    if isinstance(seed, torch.Generator) or seed is None:  # one int for every setting, drawn once
        seed = spawn_seed(make_generator(seed))
    rows = []
    settings = [(p, b) for p in policies for b in budgets]
    for policy, budget in progress(settings, desc="budget sweep"):
        surrogate = reset_parameters_(make_surrogate(), seed=seed)  # the same initialisation for every setting
        oracle = Oracle(victim, policy)
        res = train_surrogate(oracle, x_pool, surrogate, n_queries=budget, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
        pred = predict(res.model, x_test).cpu()
        rows.append({
            "budget": budget,
            "output": _policy_name(policy),
            "queries": res.queries,
            "accuracy": accuracy(pred, y_test),
            "fidelity": fidelity(pred, victim_labels),
        })
    return rows
    ### END SOLUTION
