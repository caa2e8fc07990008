"""The privacy-utility trade-off of DP-SGD on the membership labs' target, audited by attacks.

For each epsilon, ``k`` models of the target's architecture train at once on random halves of a
pool (:func:`labkit.membership.lira.random_halves`): without DP by the target's own recipe
(:func:`labkit.ensemble.fit_batched`), with DP by :func:`labkit.dp.fit_batched_dp`. Models
``0 .. T-1`` play the target in turn and models ``T .. k-1`` are the attacker's shadows, trained
with the same (DP) recipe, as LiRA assumes. Per epsilon the table reports the targets' test
accuracy, online LiRA (global variance) pooled over the ``T`` games, the gap and label-only attacks
through a label-only oracle, and the empirical epsilon of LiRA's scores.

LiRA's scores are computed here from public pieces (``shadow_logit_scores`` on the targets' logits,
``gaussian_log_pdf``), and the graded functions of Lab 5 (the empirical epsilon, the label-only
attack) are parameters, so that a lab can pass its students' own.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..dp import fit_batched_dp
from ..ensemble import fit_batched, predict_proba_batched
from ..membership import lira
from ..metrics import roc
from ..oracle import Oracle
from ..targets import TargetSetting, purchase_target_setting
from ..utils import make_generator, spawn_seed
from .. import privacy

__all__ = ["DPRecipe", "TradeoffRun", "privacy_tradeoff", "EPSILONS"]

EPSILONS = (math.inf, 8.0, 2.0, 0.5)


@dataclass(frozen=True)
class DPRecipe:
    """How the private models train (the same architecture as the target; a DP-friendly recipe).

    Larger batches raise the signal-to-noise ratio of the noisy mean gradient (the noise's
    standard deviation is ``sigma C / B``, and sigma grows more slowly than ``B``), and plain SGD
    with a large step copes with noise better than Adam here (tuned on this target, seed 0).
    """

    max_grad_norm: float = 1.0  # C
    batch_size: int = 512  # expected Poisson batch
    epochs: int = 30  # 1 / q = 4 steps each: 120 steps
    lr: float = 2.0  # SGD step
    optimizer: str = "sgd"
    momentum: float = 0.0


@dataclass
class TradeoffRun:
    """What :func:`privacy_tradeoff` measured.

    Attributes:
        rows: one dict per epsilon (the table).
        lira_scores, label_scores: per epsilon, the pooled scores ``(T * pool,)`` of the two attacks.
        is_member: bool ``(T * pool,)``, the pooled truth (the same for every epsilon).
        seconds: wall time of each epsilon's row.
    """

    rows: list[dict]
    lira_scores: dict = field(default_factory=dict)
    label_scores: dict = field(default_factory=dict)
    is_member: torch.Tensor | None = None
    seconds: dict = field(default_factory=dict)


def _lira_online_global(phi: torch.Tensor, in_mask: torch.Tensor, targets: torch.Tensor, shadows: torch.Tensor) -> torch.Tensor:
    """Online LiRA with one pooled variance per side; scores of each target row, ``(T, n)``."""
    ph, ms = phi[shadows], in_mask[shadows]  # (S, n)
    stats = []
    for side in (ms, ~ms):
        w = side.double()
        mean = (ph * w).sum(0) / w.sum(0)  # (n,)
        var = ((ph - mean) ** 2 * w).sum() / (w.sum(0) - 1).sum()  # pooled over records
        stats.append((mean, var.sqrt().clamp_min(1e-3)))
    (mu_in, s_in), (mu_out, s_out) = stats
    t = phi[targets]  # (T, n)
    return lira.gaussian_log_pdf(t, mu_in, s_in) - lira.gaussian_log_pdf(t, mu_out, s_out)


def _tpr_below(curve, fpr: float) -> float:
    allowed = curve.fpr <= fpr + 1e-12
    return float(torch.as_tensor(curve.tpr)[torch.as_tensor(allowed)].max())


def privacy_tradeoff(
    epsilons=EPSILONS,
    *,
    setting: TargetSetting | None = None,
    recipe: DPRecipe = DPRecipe(),
    k: int = 20,
    n_targets: int = 4,
    r: int = 20,
    n_copies: int = 20,
    confidence: float = 0.95,
    label_only: Callable = privacy.label_only_scores,
    empirical_epsilon: Callable = privacy.empirical_epsilon,
    device: torch.device | str = "cpu",
    seed: int | torch.Generator | None = 0,
) -> TradeoffRun:
    """Train, attack and audit private models for each epsilon (``math.inf``: no DP).

    Args:
        epsilons: target epsilons; delta is ``1 / n_train`` for all.
        setting: the target setting (default :func:`labkit.targets.purchase_target_setting`);
            the pool is ``2 * n_train`` records of its population, the test set the next 2,000.
        recipe: the DP-SGD recipe (:class:`DPRecipe`); epsilon = inf uses the target's own recipe.
        k: models per epsilon (the first ``n_targets`` are targets, the rest shadows).
        n_targets: T, games pooled per epsilon (each target gives ``n_train`` non-members).
        r, n_copies: the label-only attack's flips per copy and copies per record.
        confidence: of the empirical epsilon.
        label_only: ``label_only(oracle, x, y, *, r, n_copies, seed)`` (default
            :func:`labkit.privacy.label_only_scores`).
        empirical_epsilon: ``empirical_epsilon(scores, is_member, *, delta, confidence)``.
        device: where the models train.
        seed: seed or generator of the split, the halves, the initialisation and the training.

    Returns:
        :class:`TradeoffRun`; each row has epsilon, sigma, accountant epsilon, train and test
        accuracy, LiRA AUC and TPR at 1% and 0.1% FPR, gap and label-only AUC, the label-only
        queries, the empirical epsilon of LiRA's scores and how many non-members it rests on.
    """
    setting = setting or purchase_target_setting()
    if not 1 <= n_targets < k - 1:
        raise ValueError(f"need 1 <= n_targets < k - 1 (at least two shadows), got n_targets={n_targets}, k={k}")
    gen = make_generator(seed)
    data = setting.data()
    order = torch.randperm(len(data), generator=gen)
    n = setting.n_train
    pool = data.subset(order[: 2 * n])
    test = data.subset(order[2 * n : 2 * n + 2000])
    in_mask = lira.random_halves(2 * n, k, seed=spawn_seed(gen))  # (k, 2n)
    idx = in_mask.nonzero()[:, 1].view(k, n)
    delta = 1.0 / n
    targets, shadows = torch.arange(n_targets), torch.arange(n_targets, k)
    truth = in_mask[targets].reshape(-1)
    run = TradeoffRun(rows=[], is_member=truth)
    init_seed, train_seed, attack_seed = spawn_seed(gen), spawn_seed(gen), spawn_seed(gen)
    px, py = pool.x.to(device), pool.y.to(device)
    for eps in epsilons:
        start = time.perf_counter()
        models = setting.new_ensemble(k, seed=init_seed).to(device)
        if eps == math.inf:
            fit = fit_batched(models, px[idx], py[idx], seed=train_seed, desc="non-private models", **setting.fit_kwargs())
            sigma, spent, train_acc = 0.0, math.inf, fit.train_accuracy
        else:
            fit = fit_batched_dp(models, px[idx], py[idx], epsilon=eps, delta=delta, max_grad_norm=recipe.max_grad_norm,
                                 epochs=recipe.epochs, batch_size=recipe.batch_size, lr=recipe.lr, optimizer=recipe.optimizer,
                                 momentum=recipe.momentum, seed=train_seed, desc=f"DP-SGD models, eps={eps:g}")
            sigma, spent, train_acc = fit.noise_multiplier, fit.epsilon, fit.train_accuracy
        test_acc = (predict_proba_batched(models, test.x.to(device)).argmax(2).cpu() == test.y).double().mean(1)
        phi = lira.shadow_logit_scores(models, px, py)  # (k, 2n)
        lira_s = _lira_online_global(phi, in_mask, targets, shadows).reshape(-1)
        gap, label = [], []
        queries = 0
        for t in targets.tolist():
            oracle = Oracle(models.member(t), output="label")
            gap.append((oracle(px).cpu() == pool.y).double())
            lo = label_only(oracle, px, py, r=r, n_copies=n_copies, seed=attack_seed + t)
            label.append(lo.scores.double().cpu())
            queries += lo.queries
        gap_s, label_s = torch.cat(gap), torch.cat(label)
        c_lira, c_gap, c_label = roc(lira_s, truth), roc(gap_s, truth), roc(label_s, truth)
        bound = empirical_epsilon(lira_s, truth, delta=delta, confidence=confidence)
        bound_label = empirical_epsilon(label_s, truth, delta=delta, confidence=confidence)
        n_out = int((~truth).sum())
        run.rows.append({
            "epsilon": eps, "sigma": sigma, "accountant epsilon": spent,
            "train acc": float(train_acc[targets].mean()), "test acc": float(test_acc[targets].mean()),
            "LiRA AUC": c_lira.auc, "LiRA TPR@1%": _tpr_below(c_lira, 0.01), "LiRA TPR@0.1%": _tpr_below(c_lira, 0.001),
            "gap AUC": c_gap.auc, "label-only AUC": c_label.auc, "label-only queries": queries,
            "empirical eps (LiRA)": bound.epsilon, "empirical eps (label-only)": bound_label.epsilon,
            "non-members": n_out,
        })
        run.lira_scores[eps], run.label_scores[eps] = lira_s, label_s
        run.seconds[eps] = time.perf_counter() - start
    return run
