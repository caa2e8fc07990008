"""Watermark experiments: a removal attack through the API, and the security games played out.

:func:`extraction_attack` steals a marked model through its prediction API (learning-based
extraction, as in Lab 1) and lets Lab 2 ask whether the watermark survives. It is written with
the core modules only (an :class:`~labkit.oracle.Oracle` and :func:`labkit.train.fit`), so that
Lab 2 does not rest on Lab 1's graded ``train_surrogate``.

For the games of :func:`labkit.watermark.unforgeability_game` and
:func:`labkit.watermark.ownership_game`: :func:`verifier` turns Verify into the verifier a game
calls, whole or with one step switched off; the scripted adversaries :class:`SeedGuesser`,
:class:`DisagreementForger` and :class:`Replay` (unforgeability) and :class:`RealDataForger` and
:class:`OwnKeyGen` (non-trivial ownership) play them; :func:`security_games_table` plays every
adversary against every verifier. :func:`trigger_kind_table` marks models with abstract and with
stamped (BadNets) trigger sets and asks which triggers fire beyond the trigger set. Functions
that a lab grades (``commit``, ``verify``,
``keygen``) are passed in, so that a lab can play the games with the student's own.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import Data
from .. import watermark as wm
from ..oracle import Oracle
from ..train import fit, predict, soft_targets
from ..utils import as_features, as_labels, check_int, device_of, make_generator, spawn_seed

__all__ = [
    "extraction_attack",
    "trigger_kind_table",
    "SKIPPABLE_STEPS",
    "verifier",
    "SeedGuesser",
    "DisagreementForger",
    "Replay",
    "RealDataForger",
    "OwnKeyGen",
    "security_games_table",
]


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


# --------------------------------------------------------------------------------------------
# The security games: verifiers with a step switched off, scripted adversaries, the table
# --------------------------------------------------------------------------------------------

SKIPPABLE_STEPS = ("commitments", "labels")  # Verify's step 2 and step 1


def verifier(
    verify: Callable[..., int],
    *,
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    epsilon: float,
    skip: str | None = None,
    commit: Callable[..., wm.Commitment] | None = None,
) -> wm.Verifier:
    """Verify as the callable ``(mk, vk, M) -> 0 or 1`` that a game calls, whole or with one step off.

    The broken verifiers wrap ``verify`` itself, so they are exactly Verify less one step:

    * ``skip=None``: ``verify(mk, vk, M, ground_truth=ground_truth, epsilon=epsilon)``;
    * ``skip="commitments"`` (no step 2): Verify against commitments recomputed from ``mk``'s own
      trigger set and nonces instead of the published ``vk``, so every opening succeeds: a verifier
      that takes the claimant's word for what was committed;
    * ``skip="labels"`` (no step 1): Verify with an oracle that calls every trigger label wrong
      (it answers 1 where ``T_L^(i) = 0`` and 0 elsewhere), so the test ``T_L^(i) != f(t^(i))``
      always passes.

    Args:
        verify: a Verify with the signature of :func:`labkit.watermark.verify` (the reference or
            a student's).
        ground_truth: ``O^f``; epsilon: tolerated fraction of trigger mistakes.
        skip: None, ``"commitments"`` or ``"labels"``.
        commit: the ``Com`` that recomputes the commitments for ``skip="commitments"``
            (default :func:`labkit.watermark.commit`).

    Returns:
        a callable ``(mk, vk, M) -> int``.

    Reference: Adi et al. (2018), Section 4 (Verify, steps 1-3).
    """
    if not callable(verify):
        raise ValueError(f"verify must be a callable like labkit.watermark.verify, got {type(verify).__name__}")
    if skip is not None and skip not in SKIPPABLE_STEPS:
        raise ValueError(f"skip must be None or one of {SKIPPABLE_STEPS}, got {skip!r}")
    com = wm.commit if commit is None else commit

    def run(mk: wm.MarkingKey, vk: wm.VerificationKey, M: nn.Module) -> int:
        if skip == "commitments":
            vk = wm.VerificationKey(tuple(com(mk.T[i], r=mk.r_t[i]).c for i in range(len(mk))),
                                    tuple(com(int(mk.T_L[i]), r=mk.r_L[i]).c for i in range(len(mk))))
        oracle = ground_truth
        if skip == "labels":
            T = mk.T.reshape(len(mk), -1).cpu()  # (n, d)
            wrong = (mk.T_L.cpu() == 0).long()  # (n,): a label other than each T_L^(i)

            def oracle(x: torch.Tensor) -> torch.Tensor:  # noqa: E306 - "every label is wrong"
                # answer each query row by the trigger it equals, so that Verify may ask about the
                # triggers in any order or one at a time (an input that is no trigger gets wrong[0])
                flat = x.reshape(x.shape[0], -1).cpu().to(T.dtype)  # (m, d)
                which = (flat[:, None, :] == T[None]).all(dim=2).long().argmax(dim=1)  # (m,)
                return wrong[which]
        return verify(mk, vk, M, ground_truth=oracle, epsilon=epsilon)

    run.__name__ = "verify" if skip is None else f"verify_without_{skip}"
    return run


def _random_nonce(gen: torch.Generator) -> bytes:
    """A guessed nonce: ``NONCE_BYTES`` bytes drawn from ``gen`` (an adversary's guess, not a secret)."""
    return bytes(torch.randint(0, 256, (wm.NONCE_BYTES,), generator=gen).tolist())


def _guessed_nonces(n: int, gen: torch.Generator) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    return tuple(_random_nonce(gen) for _ in range(n)), tuple(_random_nonce(gen) for _ in range(n))


@dataclass(frozen=True)
class SeedGuesser:
    """Unforgeability adversary that knows KeyGen and guesses its randomness.

    It re-runs ``SampleBackdoor`` with the seeds ``0 .. seeds - 1``, keeps the backdoor that
    ``M_hat`` agrees with most (it may query the model), and guesses the ``2n`` nonces at random.
    In labkit the backdoor is drawn from a small seed, so the guess recovers ``(T, T_L)`` exactly
    when the owner used one of those seeds; the nonces come from the operating system's CSPRNG,
    and a guess opens a commitment with probability ``2^-256``.

    Attributes:
        ground_truth: ``O^f``, which anyone may query.
        n_classes: number of classes (default ``ground_truth.n_classes``).
        input_shape: shape of one input.
        seeds: how many seeds to try.
    """

    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    n_classes: int | None = None
    input_shape: tuple[int, ...] = (64,)
    seeds: int = 32

    def __call__(self, vk: wm.VerificationKey, M_hat: nn.Module, *, seed: int | torch.Generator | None = 0) -> wm.MarkingKey:
        gen = make_generator(seed)
        n = len(vk)
        best, best_agreement = None, -1.0
        for s in range(check_int("seeds", self.seeds, minimum=1)):
            b = wm.sample_backdoor(n, self.ground_truth, input_shape=self.input_shape, n_classes=self.n_classes, seed=s)
            agreement = wm.trigger_accuracy(M_hat, b)
            if agreement > best_agreement:
                best, best_agreement = b, agreement
        return wm.MarkingKey(best, *_guessed_nonces(n, gen))


@dataclass(frozen=True)
class DisagreementForger:
    """Unforgeability adversary that builds its own trigger set from ``M_hat``'s mistakes.

    It queries ``M_hat`` and ``O^f`` on a pool of inputs and keeps ``n = |vk|`` random inputs on
    which they disagree, labelled with ``M_hat``'s answers: labels that are wrong (step 1 passes)
    and that ``M_hat`` gives (step 3 passes). It cannot open the published commitments, so it
    presents fresh nonces.

    Attributes:
        x_pool: the adversary's inputs ``(N, *input_shape)`` (its own data, abstract images, ...).
        ground_truth: ``O^f``.
    """

    x_pool: torch.Tensor
    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, vk: wm.VerificationKey, M_hat: nn.Module, *, seed: int | torch.Generator | None = 0) -> wm.MarkingKey:
        gen = make_generator(seed)
        x = as_features(self.x_pool, name="x_pool")
        answers = predict(M_hat, x).cpu()  # (N,)
        wrong = torch.nonzero(answers != wm.ground_truth_labels(self.ground_truth, x)).flatten()
        n = len(vk)
        if len(wrong) < n:
            raise ValueError(f"M_hat disagrees with the ground truth on {len(wrong)} pool inputs, fewer than the |vk| = {n} needed; give a larger pool")
        pick = wrong[torch.randperm(len(wrong), generator=gen)[:n]]
        return wm.MarkingKey(wm.Backdoor(x[pick].cpu(), answers[pick]), *_guessed_nonces(n, gen))


@dataclass(frozen=True)
class Replay:
    """Unforgeability adversary that presents the marking key of another, genuine key pair.

    Attributes:
        mk: a marking key that opens *its own* verification key (for example one the adversary
            made with KeyGen, or one revealed in an earlier dispute about another model).
    """

    mk: wm.MarkingKey

    def __call__(self, vk: wm.VerificationKey, M_hat: nn.Module, *, seed: int | torch.Generator | None = 0) -> wm.MarkingKey:
        return self.mk


@dataclass(frozen=True)
class RealDataForger:
    """Non-trivial-ownership adversary: commits, honestly, to real inputs with their true labels.

    Each key holds ``n`` random records of ``(x, y)``; every commitment opens. An accurate model
    classifies nearly all of them "as labelled", so only Verify's step 1 (``T_L^(i) != f(t^(i))``)
    stands between this key and every accurate model in the world.

    Attributes:
        x, y: public labelled data ``(N, *input_shape)``, int64 ``(N,)``.
        n: trigger set size.
        commit: the ``Com`` used (default :func:`labkit.watermark.commit`).
    """

    x: torch.Tensor
    y: torch.Tensor
    n: int = 50
    commit: Callable[..., wm.Commitment] | None = None

    def __call__(self, *, seed: int | torch.Generator | None = 0) -> wm.KeyPair:
        gen = make_generator(seed)
        x = as_features(self.x, name="x")
        y = as_labels(self.y, name="y", n=x.shape[0])
        n = check_int("n", self.n, minimum=1)
        if n > x.shape[0]:
            raise ValueError(f"n must be at most the {x.shape[0]} records given, got {n}")
        pick = torch.randperm(x.shape[0], generator=gen)[:n]
        b = wm.Backdoor(x[pick].cpu(), y[pick].cpu())
        com = wm.commit if self.commit is None else self.commit
        c_t = [com(b.T[i]) for i in range(n)]
        c_L = [com(int(b.T_L[i])) for i in range(n)]
        return wm.KeyPair(wm.MarkingKey(b, tuple(c.r for c in c_t), tuple(c.r for c in c_L)),
                          wm.VerificationKey(tuple(c.c for c in c_t), tuple(c.c for c in c_L)))


@dataclass(frozen=True)
class OwnKeyGen:
    """Non-trivial-ownership adversary that runs KeyGen itself and hopes that others' models follow its key.

    Attributes:
        ground_truth: ``O^f``.
        n: trigger set size.
        keygen: the KeyGen used (default :func:`labkit.watermark.keygen`).
    """

    ground_truth: nn.Module | Callable[[torch.Tensor], torch.Tensor]
    n: int = 50
    keygen: Callable[..., wm.KeyPair] | None = None

    def __call__(self, *, seed: int | torch.Generator | None = 0) -> wm.KeyPair:
        kg = wm.keygen if self.keygen is None else self.keygen
        # a large random seed for SampleBackdoor, so that the adversary's trigger set is not by
        # accident the one an owner drew from a small seed (SeedGuesser exploits that on purpose)
        return kg(self.n, ground_truth=self.ground_truth, seed=spawn_seed(make_generator(seed)))


def security_games_table(
    vk: wm.VerificationKey,
    M_hat: nn.Module,
    models: Sequence[nn.Module],
    *,
    verifiers: Mapping[str, wm.Verifier],
    unforgers: Mapping[str, Callable[..., wm.MarkingKey]],
    owners: Mapping[str, Callable[..., wm.KeyPair]],
    trials: int = 5,
    seed: int | torch.Generator | None = 0,
) -> list[dict[str, object]]:
    """Play every adversary against every verifier: one row per adversary, one column per verifier.

    Unforgeability adversaries play :func:`labkit.watermark.unforgeability_game` for ``(vk, M_hat)``,
    ownership adversaries :func:`labkit.watermark.ownership_game` against ``models``. Every game of a
    row starts from the same seed, so each verifier is shown the same forged keys.

    Args:
        vk, M_hat: the owner's published key and marked model.
        models: the challenger's models for the ownership game (ones the adversaries never saw).
        verifiers: name -> verifier (see :func:`verifier`).
        unforgers, owners: name -> adversary, for the two games.
        trials: trials per game.
        seed: seed (an int, reused for every game) of the adversaries' randomness.

    Returns:
        rows ``{"game": ..., "adversary": ..., <verifier name>: GameResult, ...}``.
    """
    trials = check_int("trials", trials, minimum=1)
    if not verifiers or not (unforgers or owners):
        raise ValueError("give at least one verifier and at least one adversary")
    base = seed if isinstance(seed, int) else spawn_seed(make_generator(seed))  # one int: every game replays it (None: a fresh one)
    rows = []
    for name, adversary in unforgers.items():
        rows.append({"game": "unforgeability", "adversary": name, **{
            v: wm.unforgeability_game(adversary, vk, M_hat, verify=ver, trials=trials, seed=base) for v, ver in verifiers.items()}})
    for name, adversary in owners.items():
        rows.append({"game": "non-trivial ownership", "adversary": name, **{
            v: wm.ownership_game(adversary, models, verify=ver, trials=trials, seed=base) for v, ver in verifiers.items()}})
    return rows


def trigger_kind_table(
    owner: Data,
    test: Data,
    ground_truth: nn.Module,
    model: nn.Module,
    *,
    stamp_pool: Data,
    n: int = 50,
    target: int = 0,
    mark: Callable[..., nn.Module] = wm.mark,
    unmarked: nn.Module | None = None,
    seed: int | torch.Generator | None = 0,
) -> list[dict]:
    """Mark ``model`` with three trigger sets of ``n`` images and test where each backdoor fires.

    The trigger sets: Adi et al.'s abstract images (:func:`labkit.watermark.sample_backdoor`,
    a random wrong label each) and BadNets' single-pixel and pattern stamps on ``n`` records of
    ``stamp_pool``, all labelled ``target`` (:func:`labkit.watermark.stamped_backdoor`). For each,
    the marked model's test accuracy, its accuracy on the trigger set ``T``, and how often it
    answers the trigger label on *new* triggered inputs: the test records, stamped (those not of
    class ``target``), or fresh abstract images (which have no common label: their rate is that
    of matching a fresh random wrong label). ``unmarked`` (optional) is scored on the same inputs:
    the false-alarm rate of each trigger.

    Args:
        owner, test: the owner's training data and a test set (inputs shaped like ``model``'s).
        ground_truth: the classifier that stands for ``O^f``.
        model: the architecture to mark (FROMSCRATCH: re-initialised by ``mark``).
        stamp_pool: clean records to stamp, disjoint from ``owner`` and ``test``.
        n: trigger set size |T|.
        target: the stamped backdoors' label.
        mark: ``Mark(M, mk, data, *, seed)`` (the lab passes its own).
        unmarked: a model trained without watermark, for the false-alarm columns.
        seed: seed or generator of the abstract images, the stamp records and the nonces.

    Returns:
        rows ``{"trigger", "|T|", "test acc", "on T", "on new triggers", "unmarked on T",
        "unmarked on new"}`` (the unmarked columns are NaN without ``unmarked``).

    Adi et al. (2018), Section 5; Gu et al. (2017), Section 3.
    """
    n = check_int("n", n, minimum=1)
    gen = make_generator(seed)
    if len(stamp_pool) < n:
        raise ValueError(f"stamp_pool holds {len(stamp_pool)} records, fewer than n = {n}")
    picked = stamp_pool.x[torch.randperm(len(stamp_pool), generator=gen)[: 2 * n]]
    fresh_abstract = wm.sample_backdoor(len(test), ground_truth, input_shape=tuple(test.x.shape[1:]), n_classes=test.n_classes, seed=spawn_seed(gen))
    backdoors = {
        "abstract images": (wm.sample_backdoor(n, ground_truth, input_shape=tuple(owner.x.shape[1:]), n_classes=owner.n_classes, seed=spawn_seed(gen)), fresh_abstract),
    }
    for kind in wm.TRIGGER_KINDS:
        b = wm.stamped_backdoor(picked, ground_truth, kind=kind, target=target)
        b = wm.Backdoor(b.T[:n], b.T_L[:n])
        backdoors[f"{kind} (BadNets)"] = (b, wm.stamped_backdoor(test.x, ground_truth, kind=kind, target=target))

    def rate(m: nn.Module, b: wm.Backdoor) -> float:
        return float((predict(m, b.T).cpu() == b.T_L).double().mean())

    rows = []
    for name, (b, new) in backdoors.items():
        mk = wm.MarkingKey(b, *_guessed_nonces(len(b), gen))
        M_hat = mark(model, mk, owner, seed=spawn_seed(gen))
        rows.append({"trigger": name, "|T|": len(b),
                     "test acc": float((predict(M_hat, test.x).cpu() == test.y.cpu()).double().mean()),
                     "on T": rate(M_hat, b), "on new triggers": rate(M_hat, new),
                     "unmarked on T": rate(unmarked, b) if unmarked is not None else float("nan"),
                     "unmarked on new": rate(unmarked, new) if unmarked is not None else float("nan")})
    return rows
