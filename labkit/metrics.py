"""Metrics for attacks and models: accuracy, fidelity, precision/recall, ROC, entropy.

Membership scores follow one convention everywhere: larger means "more likely a member".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import metrics as skm

from .utils import as_labels

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
    a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if not np.isin(a, [0, 1]).all():
        raise ValueError(f"{name} must hold booleans or 0/1 values")
    return a.astype(bool)


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


def tpr_at_fpr(scores, is_member, fpr: float = 0.01) -> float:
    """The highest true positive rate reached at a false positive rate of at most ``fpr``.

    Carlini et al. (2022) argue for this number, at 1% or 0.1% FPR, over average accuracy. It
    rests on ``fpr * (number of non-members)`` false positives: with 1,000 non-members, 0.1% FPR
    allows exactly one.
    """
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr}")
    curve = roc(scores, is_member)
    ok = curve.fpr <= fpr + 1e-12
    return float(curve.tpr[ok].max())


def normalized_entropy(probs) -> torch.Tensor:
    """Prediction uncertainty ``-1/log(n) * sum_i p_i log p_i`` of each row, in ``[0, 1]``.

    Args:
        probs: probability vectors ``(N, n)`` with ``n >= 2``; ``0 log 0`` counts as 0.

    Returns:
        float tensor ``(N,)``: 0 for a one-hot prediction, 1 for the uniform one.
    """
    p = probs if isinstance(probs, torch.Tensor) else torch.as_tensor(np.asarray(probs))
    if p.dim() != 2 or p.shape[1] < 2 or not p.is_floating_point():
        raise ValueError(f"probs must be a float tensor of shape (N, n) with n >= 2, got shape {tuple(p.shape)}")
    if (p < 0).any():
        raise ValueError("probs must be non-negative")
    plogp = torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    return -plogp.sum(dim=1) / math.log(p.shape[1])
