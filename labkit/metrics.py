"""Metrics for models and attacks: accuracy, fidelity, entropy, the generalization gap,
precision/recall, ROC, attack reports, and the member/non-member sets attacks are evaluated on.

Membership scores follow one convention everywhere: larger means "more likely a member".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import metrics as skm

from .data import Data
from .utils import as_binary, as_labels, as_probabilities, check_int, make_generator

__all__ = [
    "accuracy",
    "fidelity",
    "PrecisionRecall",
    "precision_recall",
    "RocCurve",
    "roc",
    "roc_auc",
    "tpr_at_fpr",
    "normalized_entropy",
    "GapReport",
    "generalization_gap",
    "AttackReport",
    "evaluate_attack",
    "MembershipSet",
    "membership_set",
]


def _labels_of(pred, name: str) -> torch.Tensor:
    """Labels from either labels ``(N,)`` or scores/probabilities ``(N, C)`` (arg-max)."""
    t = pred if isinstance(pred, torch.Tensor) else torch.as_tensor(np.asarray(pred))
    if t.dim() == 2:
        return t.argmax(dim=1).cpu()
    return as_labels(t, name=name).cpu()


def accuracy(y_pred, y_true) -> float:
    """Fraction of predictions equal to the true labels.

    Args:
        y_pred: predicted labels ``(N,)`` or probabilities/logits ``(N, C)`` (arg-max is taken).
        y_true: true labels ``(N,)``.
    """
    a, b = _labels_of(y_pred, "y_pred"), _labels_of(y_true, "y_true")
    if a.shape != b.shape:
        raise ValueError(f"y_pred and y_true must have the same length, got {a.shape[0]} and {b.shape[0]}")
    if a.numel() == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((a == b).float().mean())


def fidelity(pred_a, pred_b) -> float:
    """Label agreement between two models' predictions (Jagielski et al. 2020, "fidelity").

    Args:
        pred_a, pred_b: labels ``(N,)`` or probabilities ``(N, C)`` of two models on the same inputs.
    """
    return accuracy(pred_a, pred_b)


@dataclass(frozen=True)
class PrecisionRecall:
    """Precision and recall of a decision "member" (positive) vs "non-member"."""

    precision: float
    recall: float
    accuracy: float


def precision_recall(decision, is_member) -> PrecisionRecall:
    """Precision, recall and accuracy of boolean decisions.

    Args:
        decision: predicted "member" (True/1) or not, shape ``(N,)``.
        is_member: the truth, shape ``(N,)``.

    Precision is 0 when nothing is predicted a member (scikit-learn's ``zero_division=0``).
    """
    d = _as_bool(decision, "decision")
    m = _as_bool(is_member, "is_member")
    if d.shape != m.shape:
        raise ValueError(f"decision and is_member must have the same length, got {d.shape[0]} and {m.shape[0]}")
    return PrecisionRecall(
        precision=float(skm.precision_score(m, d, zero_division=0)),
        recall=float(skm.recall_score(m, d, zero_division=0)),
        accuracy=float((d == m).mean()),
    )


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve: false and true positive rates at every threshold, and its area."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


def _as_scores(scores, name: str) -> np.ndarray:
    s = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per example), got shape {s.shape}")
    s = s.astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite; larger means more likely a member")
    return s


def _as_bool(v, name: str) -> np.ndarray:
    return as_binary(v, name=name).cpu().numpy()


def roc(scores, is_member) -> RocCurve:
    """The ROC curve of membership ``scores`` (larger: more likely a member)."""
    s, m = _as_scores(scores, "scores"), _as_bool(is_member, "is_member")
    if s.shape != m.shape:
        raise ValueError(f"scores and is_member must have the same length, got {s.shape[0]} and {m.shape[0]}")
    if m.all() or not m.any():
        raise ValueError("is_member must contain both members and non-members")
    # keep every threshold: with tied scores the dropped collinear points can be the best TPR at a given FPR
    fpr, tpr, thr = skm.roc_curve(m, s, drop_intermediate=False)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thr, auc=float(skm.auc(fpr, tpr)))


def roc_auc(scores, is_member) -> float:
    """Area under the ROC curve of membership ``scores`` (0.5 is chance)."""
    return roc(scores, is_member).auc


def tpr_at_fpr(scores, is_member, *, fpr: float = 0.01) -> float:
    """The highest true positive rate reached at a false positive rate of at most ``fpr``.

    Carlini et al. (2022) argue for this number, at 1% or 0.1% FPR, over average accuracy. It
    rests on ``fpr * (number of non-members)`` false positives: with 1,000 non-members, 0.1% FPR
    allows exactly one.
    """
    ### BEGIN SOLUTION lab4b_lira
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    curve = roc(scores, is_member)
    ok = curve.fpr <= fpr + 1e-12
    return float(curve.tpr[ok].max())
    ### END SOLUTION


def normalized_entropy(probs) -> torch.Tensor:
    """Prediction uncertainty ``-1/log(n) * sum_i p_i log p_i`` of each row, in ``[0, 1]``.

    Args:
        probs: probability vectors ``(N, n)`` with ``n >= 2``; ``0 log 0`` counts as 0.

    Returns:
        float tensor ``(N,)``: 0 for a one-hot prediction, 1 for the uniform one.
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    p = as_probabilities(probs, name="probs", min_classes=2, normalized=False)
    total = p.sum(dim=1, keepdim=True)
    if (total <= 0).any():
        raise ValueError("every row of probs needs a positive sum (an all-zero row is not a distribution)")
    p = p / total  # rows that do not quite sum to 1 (rounded answers) are renormalised
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return -plogp.sum(dim=1) / math.log(p.shape[1])
    ### END SOLUTION


@dataclass(frozen=True)
class GapReport:
    """Members vs non-members of a classifier's training set.

    Attributes:
        train_accuracy, test_accuracy: accuracy on members and on non-members.
        accuracy_gap: ``train_accuracy - test_accuracy``.
        confidence_members, confidence_nonmembers: mean probability given to the true class.
        confidence_gap: members minus non-members.
        entropy_members, entropy_nonmembers: mean normalized prediction entropy.
        entropy_gap: non-members minus members (positive when members get surer predictions).
    """

    train_accuracy: float
    test_accuracy: float
    accuracy_gap: float
    confidence_members: float
    confidence_nonmembers: float
    confidence_gap: float
    entropy_members: float
    entropy_nonmembers: float
    entropy_gap: float


def generalization_gap(probs_members, y_members, probs_nonmembers, y_nonmembers) -> GapReport:
    """How differently a classifier treats its training records (members) and unseen ones.

    Args:
        probs_members: predicted probabilities on members, ``(N, C)``.
        y_members: their labels ``(N,)``.
        probs_nonmembers: predicted probabilities on non-members, ``(M, C)``.
        y_nonmembers: their labels ``(M,)``.

    Returns:
        :class:`GapReport`. Large gaps mean overfitting, and they are what a membership
        inference attack thresholds on (Yeom et al. 2018; Shokri et al. 2017).
    """
    ### BEGIN SOLUTION lab3_privacy_risks
    out = {}
    for tag, p, y in (("members", probs_members, y_members), ("nonmembers", probs_nonmembers, y_nonmembers)):
        p = as_probabilities(p, name=f"probs_{tag}").double()
        y = as_labels(y, name=f"y_{tag}", n_classes=p.shape[1], n=p.shape[0]).to(p.device)
        if p.shape[0] == 0:
            raise ValueError(f"probs_{tag} must hold at least one record")
        out[tag] = (
            float((p.argmax(1) == y).double().mean()),
            float(p[torch.arange(len(y)), y].mean()),
            float(normalized_entropy(p).mean()),
        )
    (acc_m, conf_m, ent_m), (acc_n, conf_n, ent_n) = out["members"], out["nonmembers"]
    return GapReport(acc_m, acc_n, acc_m - acc_n, conf_m, conf_n, conf_m - conf_n, ent_m, ent_n, ent_n - ent_m)
    ### END SOLUTION


@dataclass(frozen=True)
class AttackReport:
    """Quality of a membership attack on equal numbers of members and non-members.

    Attributes:
        precision, recall, accuracy: of the decision "member" = score above ``threshold``
            (accuracy 0.5 is the baseline of guessing).
        auc: area under the ROC curve of the scores.
        tpr_at_1pct: true positive rate at 1% false positive rate (NaN when not computed).
        tpr_at_01pct: true positive rate at 0.1% false positive rate (NaN when not computed).
        threshold: the decision threshold used.
    """

    precision: float
    recall: float
    accuracy: float
    auc: float
    tpr_at_1pct: float = math.nan
    tpr_at_01pct: float = math.nan
    threshold: float = 0.5


def evaluate_attack(scores: torch.Tensor, is_member: torch.Tensor, *, threshold: float = 0.5) -> AttackReport:
    """Precision, recall, accuracy at ``threshold``, AUC and TPR at 1% / 0.1% FPR.

    Args:
        scores: ``(N,)`` membership scores (larger: more likely a member), e.g. ``Pr[in]``.
        is_member: bool ``(N,)``, the truth; both classes must occur.
        threshold: decide "member" when ``score > threshold``.

    Returns:
        :class:`AttackReport`.
    """
    ### BEGIN SOLUTION lab4a_membership
    s = torch.as_tensor(_as_scores(scores, "scores"))
    m = as_binary(is_member, name="is_member", n=s.shape[0])
    pr = precision_recall(s > threshold, m)
    return AttackReport(
        precision=pr.precision,
        recall=pr.recall,
        accuracy=pr.accuracy,
        auc=roc_auc(s, m),
        tpr_at_1pct=tpr_at_fpr(s, m, fpr=0.01),
        tpr_at_01pct=tpr_at_fpr(s, m, fpr=0.001),
        threshold=float(threshold),
    )
    ### END SOLUTION


@dataclass
class MembershipSet:
    """Records to attack: equal numbers of target members and non-members, shuffled.

    Attributes:
        x: inputs ``(2n, d)``; y: labels ``(2n,)``; is_member: bool ``(2n,)``.
    """

    x: torch.Tensor
    y: torch.Tensor
    is_member: torch.Tensor


def membership_set(members: Data, non_members: Data, *, n: int | None = None, seed: int | torch.Generator | None = 0) -> MembershipSet:
    """Draw ``n`` members and ``n`` non-members (default: as many as the smaller set) and shuffle.

    The baseline accuracy of guessing on this set is 0.5 (Shokri et al., Section V-D).
    """
    n_max = min(len(members), len(non_members))
    n = n_max if n is None else n
    if check_int("n", n, minimum=1) > n_max:
        raise ValueError(f"n must be an int in [1, {n_max}] (the smaller of the two sets), got {n!r}")
    gen = make_generator(seed)
    a = torch.randperm(len(members), generator=gen)[:n]
    b = torch.randperm(len(non_members), generator=gen)[:n]
    x = torch.cat([members.x[a], non_members.x[b]])
    y = torch.cat([members.y[a], non_members.y[b]])
    is_member = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    order = torch.randperm(2 * n, generator=gen)
    return MembershipSet(x[order], y[order], is_member[order])
