"""Shokri et al.'s membership inference attack with shadow models (IEEE S&P 2017).

The attacker sees the target ``f_target`` only through a prediction API
(:class:`labkit.oracle.Oracle`). The attack:

1. trains ``k`` shadow models ``f_shadow^i`` *like the target* (same architecture and recipe) on
   data ``D_shadow^{train,i}`` disjoint from the target's (:func:`train_shadow_models`);
2. queries each shadow with its own training data (labelled "in") and with a disjoint set of the
   same size (labelled "out"), and keeps the records ``((y_hat, y), in/out)``
   (:func:`build_attack_set`);
3. splits those records by the class label ``y`` and trains one binary attack model ``f_attack``
   per class (:func:`train_attack_models`);
4. scores a record ``(x, y)`` by querying the target for ``y_hat`` and asking the attack model of
   class ``y`` for ``Pr[(x, y) in D_target^train]`` (:meth:`PerClassAttack.scores`).

Design choice for ``f_attack``: by default each per-class model is a logistic regression on the
**sorted prediction vector followed by the probability of the record's label**,
``(sort(y_hat), y_hat_y)`` (standardised per class). Sorting makes the input independent of which
wrong classes get probability mass, so ~100 features learned from a few hundred records per class
do not overfit, and top-k, rounding and temperature leave it informative; the extra entry
``y_hat_y`` says whether the prediction is right, which is all a label-only API still reveals
(its answers become one-hot vectors; the mislabelling signal of Shokri et al., Section VI). On
our Purchase-like targets the raw (unsorted) vector overfits badly under top-3 or temperature,
and a small MLP (``hidden=(64,)``) is no better than logistic regression. ``features="raw"`` or
``"sorted"`` give the other variants.

The experiment functions at the end rebuild the paper's tables on :func:`labkit.data.make_purchase`:
overfitting vs attack success (Table II), shadow data sources (Figure 9) and mitigations
(the lecture's mitigation table, from Section VI of the paper).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Data, Splits, make_splits
from ..metrics import normalized_entropy, precision_recall, roc_auc, tpr_at_fpr
from ..models import MLP, LogisticRegression
from ..oracle import Oracle, OutputPolicy
from ..train import evaluate, fit_batched, predict_proba
from ..utils import make_generator, progress, spawn_seed
from .lira import TargetSetting, purchase_target_setting
from .synthesis import SynthesisResult, marginal_synthesis, noisy_data, synthesize_batch

__all__ = [
    "ShadowModels",
    "train_models_like_target",
    "train_shadow_models",
    "prediction_vectors",
    "AttackSet",
    "build_attack_set",
    "attack_features",
    "PerClassAttack",
    "train_attack_models",
    "AttackReport",
    "evaluate_attack",
    "MembershipSet",
    "membership_set",
    "ShokriAttack",
    "shokri_attack",
    "SynthesisConfig",
    "MITIGATION_POLICIES",
    "Scenario",
    "make_scenario",
    "attack_scenario",
    "overfitting_table",
    "shadow_data_table",
    "mitigation_table",
]

_FEATURES = ("raw", "sorted", "sorted_label")


# ============================================================================ shadow models
@dataclass
class ShadowModels:
    """``k`` shadow models and the data each one was trained and tested on.

    Attributes:
        models: the ``k`` trained shadow models ``f_shadow^i`` (:class:`labkit.models.MLP`).
        train: ``D_shadow^{train,i}``, the records each one trained on ("in").
        test: ``D_shadow^{test,i}``, disjoint records of the same size ("out").
    """

    models: list[nn.Module]
    train: list[Data]
    test: list[Data]

    def __len__(self) -> int:
        return len(self.models)


def train_models_like_target(train_sets: Sequence[Data], *, setting: TargetSetting, seed: int | torch.Generator | None = 0) -> list[MLP]:
    """Train one model per dataset with the target's recipe, all at once as a batched ensemble.

    Args:
        train_sets: datasets of equal size, each with ``(n, d)`` features.
        setting: architecture and training recipe (``setting.new_ensemble``, ``setting.fit_kwargs()``).
        seed: seed or generator for initialisation and shuffling.

    Returns:
        the trained models, as stand-alone :class:`labkit.models.MLP` s in eval mode.
    """
    if not train_sets:
        raise ValueError("train_sets must hold at least one dataset, got none")
    sizes = {len(d) for d in train_sets}
    if len(sizes) != 1:
        raise ValueError(f"all training sets must have the same size, got sizes {sorted(sizes)}")
    gen = make_generator(seed)
    ensemble = setting.new_ensemble(len(train_sets), seed=spawn_seed(gen))
    x = torch.stack([d.x for d in train_sets])  # (k, n, d)
    y = torch.stack([d.y for d in train_sets])  # (k, n)
    fit_batched(ensemble, x, y, seed=spawn_seed(gen), desc="shadow models", **setting.fit_kwargs())
    return [ensemble.member(i).eval() for i in range(len(train_sets))]


def train_shadow_models(
    pool: Data,
    *,
    k: int,
    setting: TargetSetting,
    n_train: int | None = None,
    seed: int | torch.Generator | None = 0,
) -> ShadowModels:
    """Train ``k`` shadow models like the target on data disjoint from the target's.

    Shadow ``i`` draws ``D_shadow^{train,i}`` and ``D_shadow^{test,i}``, two disjoint random
    subsets of ``pool`` of ``n_train`` records each; different shadows' sets may overlap
    (Shokri et al., Figure 2).

    Args:
        pool: the attacker's records (real, synthetic or noisy), disjoint from the target's data.
        k: number of shadow models.
        setting: the target's architecture and training recipe (the attacker knows it, or uses
            the same ML service).
        n_train: size of each shadow's training set (default ``setting.n_train``, as the target).
        seed: seed or generator.

    Returns:
        :class:`ShadowModels`.

    Shokri et al. (2017), Section IV-B "Shadow models".
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    n_train = setting.n_train if n_train is None else n_train
    if isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1:
        raise ValueError(f"n_train must be an int >= 1, got {n_train!r}")
    if 2 * n_train > len(pool):
        raise ValueError(f"each shadow needs 2 * n_train = {2 * n_train} records (train and test), but the pool has {len(pool)}")
    gen = make_generator(seed)
    train, test = [], []
    for i in range(k):
        perm = torch.randperm(len(pool), generator=gen)
        train.append(pool.subset(perm[:n_train], name=f"shadow{i}/train"))
        test.append(pool.subset(perm[n_train : 2 * n_train], name=f"shadow{i}/test"))
    models = train_models_like_target(train, setting=setting, seed=gen)
    return ShadowModels(models=models, train=train, test=test)


# ============================================================================ attack training set
def prediction_vectors(answers: torch.Tensor, n_classes: int) -> torch.Tensor:
    """An API's answers as prediction vectors ``(N, C)``: probabilities kept, labels one-hot.

    Args:
        answers: float ``(N, C)`` probability vectors, or int64 ``(N,)`` labels (label-only API).
        n_classes: C.

    Returns:
        float32 ``(N, C)``.
    """
    if not isinstance(answers, torch.Tensor):
        answers = torch.as_tensor(answers)
    if answers.dim() == 1 and not answers.is_floating_point():
        if answers.numel() and (int(answers.min()) < 0 or int(answers.max()) >= n_classes):
            raise ValueError(f"labels must lie in [0, {n_classes - 1}], got values in [{int(answers.min())}, {int(answers.max())}]")
        return F.one_hot(answers.long(), n_classes).float()
    if answers.dim() != 2 or answers.shape[1] != n_classes:
        raise ValueError(f"answers must be labels (N,) or prediction vectors (N, {n_classes}), got shape {tuple(answers.shape)}")
    return answers.float()


@dataclass
class AttackSet:
    """The attack training set ``D_attack^train``: records ``((y_hat, y), in/out)``.

    Attributes:
        y_hat: float32 ``(N, C)``, prediction vectors of the shadow models.
        y: int64 ``(N,)``, the records' true labels.
        member: bool ``(N,)``, True for "in" (the shadow trained on the record).
    """

    y_hat: torch.Tensor
    y: torch.Tensor
    member: torch.Tensor

    def __len__(self) -> int:
        return self.y.shape[0]

    @property
    def n_classes(self) -> int:
        return self.y_hat.shape[1]

    def for_class(self, c: int) -> "AttackSet":
        """The partition of records whose label is ``c`` (the training set of attack model c)."""
        idx = self.y == c
        return AttackSet(self.y_hat[idx], self.y[idx], self.member[idx])


def build_attack_set(
    f_shadow: Sequence[Callable[[torch.Tensor], torch.Tensor]],
    D_train: Sequence[Data],
    D_test: Sequence[Data],
) -> AttackSet:
    """Build ``D_attack^train`` from the shadow models' outputs on their own train and test data.

    For every shadow ``i``: each ``(x, y)`` in ``D_train[i]`` adds ``((f_shadow^i(x), y), in)``
    and each ``(x, y)`` in ``D_test[i]`` adds ``((f_shadow^i(x), y), out)``.

    Args:
        f_shadow: the shadow models as callables ``x -> answers``: a model's probabilities, or an
            :class:`~labkit.oracle.Oracle` around the shadow that applies the target API's
            output policy (labels become one-hot vectors).
        D_train: the data each shadow trained on.
        D_test: for each shadow, disjoint records of the same size.

    Returns:
        :class:`AttackSet` with, for each shadow in turn, its "in" records then its "out" records.

    Shokri et al. (2017), Section IV-C "Training the attack model".
    """
    if not (len(f_shadow) == len(D_train) == len(D_test)) or len(f_shadow) == 0:
        raise ValueError(f"f_shadow, D_train and D_test must have the same non-zero length, got {len(f_shadow)}, {len(D_train)}, {len(D_test)}")
    y_hat, ys, member = [], [], []
    for i, (f, tr, te) in enumerate(zip(f_shadow, D_train, D_test)):
        if len(tr) != len(te):
            raise ValueError(f"shadow {i}: the 'out' set must have the same size as the training set, got {len(te)} and {len(tr)}")
        for data, is_in in ((tr, True), (te, False)):
            y_hat.append(prediction_vectors(_answers(f, data.x), data.n_classes).cpu())
            ys.append(data.y.cpu())
            member.append(torch.full((len(data),), is_in))
    return AttackSet(torch.cat(y_hat), torch.cat(ys), torch.cat(member))


def _answers(f: Callable, x: torch.Tensor) -> torch.Tensor:
    """``f(x)``; a bare nn.Module (logits) is turned into probabilities."""
    if isinstance(f, nn.Module):
        return predict_proba(f, x)
    with torch.no_grad():
        return f(x)


# ============================================================================ per-class attack models
def attack_features(y_hat: torch.Tensor, y: torch.Tensor, *, features: str = "sorted_label") -> torch.Tensor:
    """The input of ``f_attack`` computed from prediction vectors ``(N, C)`` and labels ``(N,)``.

    Args:
        y_hat: float ``(N, C)`` prediction vectors (one-hot for a label-only API).
        y: int64 ``(N,)``, the records' labels.
        features: ``"sorted_label"`` (default): ``y_hat`` sorted in decreasing order, then
            ``y_hat[y]``, shape ``(N, C + 1)``; ``"sorted"``: the sorted vector ``(N, C)``;
            ``"raw"``: ``y_hat`` itself ``(N, C)``.

    Returns:
        float32 ``(N, C)`` or ``(N, C + 1)``.
    """
    if features not in _FEATURES:
        raise ValueError(f"features must be one of {_FEATURES}, got {features!r}")
    if not isinstance(y_hat, torch.Tensor) or y_hat.dim() != 2:
        raise ValueError(f"y_hat must be a tensor of prediction vectors (N, C), got {getattr(y_hat, 'shape', type(y_hat).__name__)}")
    y = torch.as_tensor(y).long().to(y_hat.device)
    if y.shape != (y_hat.shape[0],):
        raise ValueError(f"y must have shape ({y_hat.shape[0]},) (one label per prediction vector), got {tuple(y.shape)}")
    v = y_hat.float()
    if features == "raw":
        return v
    srt = v.sort(dim=1, descending=True).values  # (N, C)
    if features == "sorted":
        return srt
    return torch.cat([srt, v.gather(1, y[:, None])], dim=1)  # (N, C + 1)


@dataclass
class PerClassAttack:
    """One binary attack model per class: ``models[c]`` judges records labelled ``c``.

    Attributes:
        models: ``models[c]`` maps attack features (see :func:`attack_features`) to logits ``(N, 2)`` over
            ("out", "in"), or is None when the training set had no records of class ``c``
            (those records then score 0.5).
        features: the feature transform (see :func:`attack_features`).
    """

    models: list[nn.Module | None]
    features: str = "sorted_label"

    @property
    def n_classes(self) -> int:
        return len(self.models)

    @torch.no_grad()
    def scores(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``Pr[in]`` for records with prediction vectors ``y_hat (N, C)`` (or labels) and labels ``y (N,)``.

        Returns:
            float32 ``(N,)`` in ``[0, 1]`` (larger: more likely a member).
        """
        y_hat = prediction_vectors(y_hat, self.n_classes).cpu()
        y = torch.as_tensor(y).long().cpu()
        if y.shape != (y_hat.shape[0],):
            raise ValueError(f"y must have shape ({y_hat.shape[0]},), got {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"y must hold labels in [0, {self.n_classes - 1}], got values in [{int(y.min())}, {int(y.max())}]")
        feats = attack_features(y_hat, y, features=self.features)
        out = torch.full((y.shape[0],), 0.5)
        for c in torch.unique(y).tolist():
            model = self.models[c]
            if model is None:
                continue
            idx = y == c
            out[idx] = torch.softmax(model(feats[idx]).float(), dim=1)[:, 1]
        return out

    def score_records(self, oracle: Oracle, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Query the target API on ``x`` and score the records ``(x, y)``: ``(N,)`` in ``[0, 1]``."""
        return self.scores(prediction_vectors(oracle(x), self.n_classes), y)


def train_attack_models(
    attack_set: AttackSet,
    *,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    epochs: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int | torch.Generator | None = 0,
) -> PerClassAttack:
    """Train one binary attack model ``f_attack`` per class on ``D_attack^train``.

    The training set is split by the label ``y``; the model of class ``c`` learns to tell "in"
    from "out" prediction vectors of records labelled ``c``. Inputs are standardised per class
    (the statistics are folded into the first layer). All classes train together, full batch,
    with Adam on the binary cross-entropy: class ``c``'s parameters receive gradients from class
    ``c``'s records only, so this equals training the models one by one.

    Args:
        attack_set: from :func:`build_attack_set`.
        features: input transform, see :func:`attack_features` (default ``"sorted_label"``).
        hidden: ``()`` for logistic regression (default), e.g. ``(64,)`` for a ReLU MLP.
        epochs: full-batch Adam steps.
        lr, weight_decay: Adam's step size and L2 penalty.
        seed: seed or generator for the initialisation of MLPs.

    Returns:
        :class:`PerClassAttack` with :class:`labkit.models.LogisticRegression` (D -> 2) or
        :class:`labkit.models.MLP` models.

    Shokri et al. (2017), Section IV-C: "we train a collection of c_target attack models, one
    per each output class of the target model".
    """
    if len(attack_set) == 0:
        raise ValueError("attack_set is empty")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    hidden = tuple(int(h) for h in hidden)
    if len(hidden) > 1 or any(h < 1 for h in hidden):
        raise ValueError(f"hidden must be () or one width such as (64,), got {hidden}")
    C = attack_set.n_classes
    feats = attack_features(attack_set.y_hat.cpu(), attack_set.y.cpu(), features=features)  # (N, D)
    # Pad the classes into one (C, n_max, C) block; `w` marks real records.
    xp, mp, w = _pad_by_class(feats, attack_set.y.cpu(), attack_set.member.float().cpu(), C)
    count = w.sum(dim=1).clamp_min(1)  # (C,)
    mu = (xp * w[..., None]).sum(dim=1) / count[:, None]  # (C, D)
    sd = (((xp - mu[:, None]) ** 2 * w[..., None]).sum(dim=1) / count[:, None]).sqrt() + 1e-3  # (C, D)
    xs = (xp - mu[:, None]) / sd[:, None]  # standardised
    gen = make_generator(seed)
    D = feats.shape[1]
    if hidden:
        h = hidden[0]
        W1 = (torch.rand(C, D, h, generator=gen) * 2 - 1) / math.sqrt(D)
        b1 = torch.zeros(C, 1, h)
        W2 = (torch.rand(C, h, 1, generator=gen) * 2 - 1) / math.sqrt(h)
        b2 = torch.zeros(C, 1, 1)
        params = [nn.Parameter(t) for t in (W1, b1, W2, b2)]

        def logit(x):
            return torch.baddbmm(params[3], torch.relu(torch.baddbmm(params[1], x, params[0])), params[2])[..., 0]
    else:
        params = [nn.Parameter(torch.zeros(C, D)), nn.Parameter(torch.zeros(C, 1))]

        def logit(x):  # (C, n_max, D) -> (C, n_max); a product and a sum beat a bmm with one column
            return (x * params[0][:, None, :]).sum(dim=2) + params[1]

    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    # Each class's loss is its own mean; summing over classes keeps the classes independent.
    weight = w / count[:, None]
    for _ in progress(range(epochs), desc="attack models"):
        loss = F.binary_cross_entropy_with_logits(logit(xs), mp, weight=weight, reduction="sum")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    models: list[nn.Module | None] = []
    with torch.no_grad():
        for c in range(C):
            if w[c].sum() == 0:
                models.append(None)
                continue
            scale, shift = 1.0 / sd[c], -mu[c] / sd[c]  # x_std = x * scale + shift
            if hidden:
                m = MLP(D, 2, hidden=hidden, activation="relu")
                lin1, lin2 = m.net[0], m.net[-1]
                W1c = params[0][c] * scale[:, None]  # (D, h)
                lin1.weight.copy_(W1c.T)
                lin1.bias.copy_(params[1][c, 0] + shift @ params[0][c])
                lin2.weight.copy_(torch.cat([torch.zeros(1, hidden[0]), params[2][c].T]))  # logits [0, z]
                lin2.bias.copy_(torch.cat([torch.zeros(1), params[3][c, 0]]))
            else:
                m = LogisticRegression(D, 2)  # binary: logits [0, w.x + b]
                m.linear.weight.copy_((params[0][c] * scale)[None])
                m.linear.bias.copy_(params[1][c] + shift @ params[0][c])
            models.append(m.eval())
    return PerClassAttack(models=models, features=features)


def _pad_by_class(x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Group rows by class into ``(C, n_max, D)`` features, ``(C, n_max)`` targets and a 0/1 mask."""
    counts = torch.bincount(y, minlength=C)
    n_max = max(int(counts.max()), 1)
    order = torch.argsort(y, stable=True)
    ys = y[order]
    pos = torch.arange(len(y)) - (torch.cumsum(counts, 0) - counts)[ys]  # position within its class
    xp = torch.zeros(C, n_max, x.shape[1])
    tp = torch.zeros(C, n_max)
    w = torch.zeros(C, n_max)
    xp[ys, pos] = x[order]
    tp[ys, pos] = t[order]
    w[ys, pos] = 1.0
    return xp, tp, w


# ============================================================================ evaluation
@dataclass(frozen=True)
class AttackReport:
    """Quality of a membership attack on equal numbers of members and non-members.

    Attributes:
        precision, recall, accuracy: of the decision "member" = score above ``threshold``
            (accuracy 0.5 is the baseline of guessing).
        auc: area under the ROC curve of the scores.
        tpr_at_1pct: true positive rate at 1% false positive rate.
        tpr_at_01pct: true positive rate at 0.1% false positive rate.
        threshold: the decision threshold used.
    """

    precision: float
    recall: float
    accuracy: float
    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    threshold: float = 0.5

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_attack(scores: torch.Tensor, is_member: torch.Tensor, *, threshold: float = 0.5) -> AttackReport:
    """Precision, recall, accuracy at ``threshold``, AUC and TPR at 1% / 0.1% FPR.

    Args:
        scores: ``(N,)`` membership scores (larger: more likely a member), e.g. ``Pr[in]``.
        is_member: bool ``(N,)``, the truth; both classes must occur.
        threshold: decide "member" when ``score > threshold``.

    Returns:
        :class:`AttackReport`.
    """
    s = torch.as_tensor(scores).double().cpu()
    m = torch.as_tensor(is_member).bool().cpu()
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
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= n_max:
        raise ValueError(f"n must be an int in [1, {n_max}] (the smaller of the two sets), got {n!r}")
    gen = make_generator(seed)
    a = torch.randperm(len(members), generator=gen)[:n]
    b = torch.randperm(len(non_members), generator=gen)[:n]
    x = torch.cat([members.x[a], non_members.x[b]])
    y = torch.cat([members.y[a], non_members.y[b]])
    is_member = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    order = torch.randperm(2 * n, generator=gen)
    return MembershipSet(x[order], y[order], is_member[order])


# ============================================================================ the whole attack
@dataclass
class ShokriAttack:
    """A trained shadow-model attack: the per-class attack models and what built them.

    Attributes:
        attack: the per-class attack models (score records with ``attack.score_records``).
        shadows: the shadow models and their data.
        attack_set: ``D_attack^train``.
    """

    attack: PerClassAttack
    shadows: ShadowModels
    attack_set: AttackSet

    def score_records(self, oracle: Oracle, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``Pr[(x, y) in D_target^train]`` ``(N,)``, from the target API's answers on ``x``."""
        return self.attack.score_records(oracle, x, y)


def shokri_attack(
    oracle: Oracle,
    shadow_data: Data,
    *,
    k: int,
    setting: TargetSetting | None = None,
    n_train: int | None = None,
    shadows: ShadowModels | None = None,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    seed: int | torch.Generator | None = 0,
) -> ShokriAttack:
    """Run Shokri et al.'s attack against the API ``oracle``: shadows, attack set, attack models.

    The shadows' answers pass through the target API's output policy (``oracle.policy``: top-k,
    rounding, temperature, label only), so the attack models learn from what the API would show.

    Args:
        oracle: the target's prediction API (only its policy and ``n_classes`` are used here;
            scoring queries it).
        shadow_data: the attacker's pool for the shadows' train and test sets.
        k: number of shadow models.
        setting: the target's training recipe, used for the shadows (default
            :func:`purchase_target_setting`).
        n_train: records per shadow training set (default ``setting.n_train``).
        shadows: already trained shadows to reuse (then ``shadow_data``, ``k`` and ``n_train``
            are ignored); useful to compare output policies on the same shadows.
        features, hidden: attack model options (see :func:`train_attack_models`).
        seed: seed or generator.

    Returns:
        :class:`ShokriAttack`.
    """
    gen = make_generator(seed)
    if shadows is None:
        setting = setting or purchase_target_setting()
        shadows = train_shadow_models(shadow_data, k=k, setting=setting, n_train=n_train, seed=spawn_seed(gen))
    else:
        spawn_seed(gen)
    apis = [Oracle(m, oracle.policy) for m in shadows.models]
    attack_set = build_attack_set(apis, shadows.train, shadows.test)
    attack = train_attack_models(attack_set, features=features, hidden=hidden, seed=spawn_seed(gen))
    return ShokriAttack(attack=attack, shadows=shadows, attack_set=attack_set)


# ============================================================================ experiments (tables)
@dataclass(frozen=True)
class SynthesisConfig:
    """Parameters of model-based synthesis (Algorithm 1) used by :func:`shadow_data_table`.

    Attributes:
        k_max: features randomized per step at first (of 600).
        k_min: the fewest features randomized per step.
        conf_min: confidence to exceed before a record may be kept.
        rej_max: consecutive rejects before k is halved.
        iter_max: queries per chain before giving up.
        p_one: probability that a randomized feature is 1 (0.5: the attacker knows nothing).
    """

    k_max: int = 128
    k_min: int = 4
    conf_min: float = 0.5
    rej_max: int = 20
    iter_max: int = 2_000
    p_one: float = 0.5


MITIGATION_POLICIES: dict[str, OutputPolicy] = {
    "no mitigation": OutputPolicy(),
    "top-k = 3": OutputPolicy(top_k=3),
    "top-k = 1": OutputPolicy(top_k=1),
    "top-k = 1 label": OutputPolicy(output="label"),
    "rounding d = 3": OutputPolicy(decimals=3),
    "rounding d = 1": OutputPolicy(decimals=1),
    "temperature t = 5": OutputPolicy(temperature=5.0),
    "temperature t = 20": OutputPolicy(temperature=20.0),
}
"""The output policies of the lecture's mitigation table (Shokri et al. 2017, Section VI)."""


@dataclass
class Scenario:
    """A target model, its data and shadow models trained like it: the setting of one experiment.

    Attributes:
        setting: the data and training recipe (shared by target and shadows).
        splits: ``target_train`` (members), ``target_test`` (non-members) and ``shadow``, the
            attacker's pool of real records, disjoint from both.
        target: ``f_target``, trained on ``splits.target_train``.
        shadows: ``k`` shadow models trained on random disjoint train/test halves drawn from
            ``splits.shadow``.
    """

    setting: TargetSetting
    splits: Splits
    target: nn.Module
    shadows: ShadowModels

    def evaluation_set(self, *, n: int | None = None, seed: int | torch.Generator | None = 0) -> MembershipSet:
        """``n`` members and ``n`` non-members of the target (default: all ``n_train`` of each)."""
        return membership_set(self.splits.target_train, self.splits.target_test, n=n, seed=seed)

    def train_accuracy(self) -> float:
        return _accuracy(self.target, self.splits.target_train)

    def test_accuracy(self) -> float:
        return _accuracy(self.target, self.splits.target_test)


def make_scenario(setting: TargetSetting | None = None, *, k: int = 4, seed: int = 0) -> Scenario:
    """Build a :class:`Scenario`: split the population, train the target and ``k`` shadows.

    The population ``setting.data()`` is cut into the target's training set and test set
    (``n_train`` records each) and the attacker's pool (the rest). Target and shadows are trained
    in one batched ensemble: same recipe, independent members (this only saves time; the attack
    still sees the target through an :class:`~labkit.oracle.Oracle`).

    Args:
        setting: default :func:`purchase_target_setting`.
        k: number of shadow models.
        seed: seed of the split and of the training.
    """
    setting = setting or purchase_target_setting()
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    data = setting.data()
    n = setting.n_train
    if len(data) < 4 * n:
        raise ValueError(f"the population ({len(data)} records) must hold at least 4 * n_train = {4 * n} records")
    splits = make_splits(data, target_train=n, target_test=n, shadow=len(data) - 2 * n, seed=seed)
    gen = make_generator(seed + 1)
    train, test = _shadow_splits(splits.shadow, k=k, n_train=n, generator=gen)
    models = train_models_like_target([splits.target_train, *train], setting=setting, seed=gen)
    return Scenario(setting, splits, models[0], ShadowModels(models=models[1:], train=train, test=test))


def _shadow_splits(pool: Data, *, k: int, n_train: int, generator: torch.Generator) -> tuple[list[Data], list[Data]]:
    train, test = [], []
    for i in range(k):
        perm = torch.randperm(len(pool), generator=generator)
        train.append(pool.subset(perm[:n_train], name=f"shadow{i}/train"))
        test.append(pool.subset(perm[n_train : 2 * n_train], name=f"shadow{i}/test"))
    return train, test


def attack_scenario(
    scenario: Scenario,
    *,
    policy: OutputPolicy = OutputPolicy(),
    shadows: ShadowModels | None = None,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int = 0,
) -> AttackReport:
    """Run Shokri et al.'s attack on a scenario's target behind an API with output ``policy``.

    Args:
        scenario: from :func:`make_scenario`.
        policy: the API's output policy, known to the attacker and applied to the shadows too.
        shadows: shadow models to use instead of ``scenario.shadows`` (e.g. trained on
            synthetic data).
        features, hidden: attack model options (:func:`train_attack_models`).
        n_eval: members and non-members evaluated (default: all).
        seed: seed of the attack models and of the evaluation sample.

    Returns:
        :class:`AttackReport` on equal numbers of members and non-members.
    """
    oracle = Oracle(scenario.target, policy)
    result = shokri_attack(oracle, scenario.splits.shadow, k=1, shadows=shadows or scenario.shadows, features=features, hidden=hidden, seed=seed)
    ev = scenario.evaluation_set(n=n_eval, seed=seed)
    return evaluate_attack(result.score_records(oracle, ev.x, ev.y), ev.is_member)


def _accuracy(model: nn.Module, data: Data) -> float:
    return evaluate(model, data.x, data.y)


def overfitting_table(
    n_classes: Sequence[int] = (2, 10, 20, 50, 100),
    *,
    setting: TargetSetting | None = None,
    k: int = 4,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Overfitting vs attack success on Purchase-like data with 2-100 classes (Shokri et al., Table II).

    For each number of classes: a :func:`make_scenario` with ``setting`` (default
    :func:`purchase_target_setting`) whose ``n_classes`` is replaced, then the per-class attack.

    Returns:
        rows ``{"classes", "train acc", "test acc", "gap", "precision", "recall", "accuracy",
        "AUC", "uncertainty in", "uncertainty out"}`` (uncertainty: mean normalized entropy of
        the target's predictions on members and on non-members).
    """
    setting = setting or purchase_target_setting()
    rows = []
    for C in progress(list(n_classes), desc="classes"):
        sc = make_scenario(dataclasses.replace(setting, n_classes=int(C)), k=k, seed=seed)
        report = attack_scenario(sc, features=features, hidden=hidden, n_eval=n_eval, seed=seed)
        train_acc, test_acc = sc.train_accuracy(), sc.test_accuracy()
        rows.append(
            {
                "classes": int(C),
                "train acc": train_acc,
                "test acc": test_acc,
                "gap": train_acc - test_acc,
                "precision": report.precision,
                "recall": report.recall,
                "accuracy": report.accuracy,
                "AUC": report.auc,
                "uncertainty in": float(normalized_entropy(predict_proba(sc.target, sc.splits.target_train.x)).mean()),
                "uncertainty out": float(normalized_entropy(predict_proba(sc.target, sc.splits.target_test.x)).mean()),
            }
        )
    return rows


def shadow_data_table(
    scenario: Scenario | None = None,
    *,
    k: int = 4,
    pool_size: int = 6_000,
    sources: Sequence[str] = ("real", "noisy 10%", "noisy 20%", "marginal", "model-based"),
    synthesis: SynthesisConfig = SynthesisConfig(),
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Attack quality for different sources of shadow training data (Shokri et al., Figure 9).

    Every source yields a pool of ``pool_size`` labelled records, from which ``k`` new shadows
    draw their train and test sets (the scenario's own shadows are not used):

    * ``"real"``: real records disjoint from the target's;
    * ``"noisy 10%"`` / ``"noisy 20%"``: those real records with 10% / 20% of features flipped;
    * ``"marginal"``: records drawn feature by feature from the per-class marginals of the real pool;
    * ``"model-based"``: records synthesized by querying the target (:func:`synthesize_batch`,
      classes assigned round-robin), which needs no data at all.

    Args:
        scenario: the target (default: ``make_scenario(k=1)``).

    Returns:
        rows ``{"shadow data", "records", "queries/record", "precision", "recall", "accuracy",
        "AUC", "TPR@1%FPR"}`` ("queries/record" only for model-based synthesis).
    """
    scenario = scenario or make_scenario(k=1, seed=seed)
    setting = scenario.setting
    if 2 * setting.n_train > pool_size:
        raise ValueError(f"pool_size must be at least 2 * n_train = {2 * setting.n_train}, got {pool_size}")
    real_all = scenario.splits.shadow
    if pool_size > len(real_all):
        raise ValueError(f"pool_size must be at most {len(real_all)} (the attacker's real records), got {pool_size}")
    gen = make_generator(seed + 3)
    real = real_all.subset(torch.randperm(len(real_all), generator=gen)[:pool_size], name="real")
    oracle = Oracle(scenario.target)
    rows = []
    for source in progress(list(sources), desc="shadow data"):
        queries = float("nan")
        if source == "real":
            pool = real
        elif source.startswith("noisy"):
            pool = noisy_data(real, fraction=float(source.split()[1].rstrip("%")) / 100, generator=gen)
        elif source == "marginal":
            pool = marginal_synthesis(real, pool_size, generator=gen)
        elif source == "model-based":
            res = _synthesize_pool(oracle, pool_size, setting.n_classes, synthesis, gen)
            queries = res.queries_per_record
            pool = res.data(setting.n_classes, name="model-based")
            pool = pool.subset(torch.arange(min(pool_size, len(pool))))
        else:
            raise ValueError(f"unknown shadow data source {source!r}; use 'real', 'noisy 10%', 'noisy 20%', 'marginal' or 'model-based'")
        shadows = train_shadow_models(pool, k=k, setting=setting, seed=spawn_seed(gen))
        report = attack_scenario(scenario, shadows=shadows, features=features, hidden=hidden, n_eval=n_eval, seed=seed)
        rows.append(
            {
                "shadow data": source,
                "records": len(pool),
                "queries/record": queries,
                "precision": report.precision,
                "recall": report.recall,
                "accuracy": report.accuracy,
                "AUC": report.auc,
                "TPR@1%FPR": report.tpr_at_1pct,
            }
        )
    return rows


def _synthesize_pool(oracle: Oracle, n: int, n_classes: int, cfg: SynthesisConfig, gen: torch.Generator) -> SynthesisResult:
    """Run SYNTHESIZE chains (classes round-robin) until ``n`` records exist; merge the results."""
    parts: list[SynthesisResult] = []
    have, chains, started = 0, n, 0
    for _ in range(10):
        classes = (torch.arange(chains) + started) % n_classes
        started += chains
        res = synthesize_batch(
            oracle, classes, k_max=cfg.k_max, k_min=cfg.k_min, conf_min=cfg.conf_min, rej_max=cfg.rej_max,
            iter_max=cfg.iter_max, p_one=cfg.p_one, generator=gen,
        )
        parts.append(res)
        have += res.n_records
        if have >= n:
            break
        rate = max(have / started, 0.05)  # success rate so far: start enough chains for the rest
        chains = int(math.ceil((n - have) / rate * 1.1))
    return SynthesisResult(
        x=torch.cat([p.x for p in parts]),
        classes=torch.cat([p.classes for p in parts]),
        success=torch.cat([p.success for p in parts]),
        queries=torch.cat([p.queries for p in parts]),
        oracle_calls=sum(p.oracle_calls for p in parts),
    )


def mitigation_table(
    scenario: Scenario | None = None,
    *,
    policies: Mapping[str, OutputPolicy] = MITIGATION_POLICIES,
    l2: Sequence[float] = (1e-4, 1e-3, 1e-2),
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Re-run the lecture's mitigation table on Purchase-like data (Shokri et al. 2017, Section VI).

    Output policies (top-k, label only, rounding, temperature) degrade the answers of the
    scenario's target; the attacker knows the policy and applies it to its shadows' answers too.
    L2 regularisation retrains target and shadows (same data, same number of shadows) with
    ``weight_decay = lambda``: the attacker trains its shadows the way the target was trained.

    Args:
        scenario: the unprotected target and its shadows (default: ``make_scenario()``).

    Returns:
        rows ``{"mitigation", "test acc", "attack acc", "precision", "recall", "AUC"}``.
    """
    scenario = scenario or make_scenario(seed=seed)
    test_acc = scenario.test_accuracy()

    def row(name: str, acc: float, report: AttackReport) -> dict:
        return {"mitigation": name, "test acc": acc, "attack acc": report.accuracy, "precision": report.precision, "recall": report.recall, "AUC": report.auc}

    rows = []
    for name, policy in progress(list(policies.items()), desc="output policies"):
        report = attack_scenario(scenario, policy=policy, features=features, hidden=hidden, n_eval=n_eval, seed=seed)
        rows.append(row(name, test_acc, report))
    shadows = scenario.shadows
    for lam in progress(list(l2), desc="L2"):
        setting = dataclasses.replace(scenario.setting, weight_decay=float(lam))
        models = train_models_like_target([scenario.splits.target_train, *shadows.train], setting=setting, seed=seed + 1)
        regularised = Scenario(setting, scenario.splits, models[0], ShadowModels(models[1:], shadows.train, shadows.test))
        report = attack_scenario(regularised, features=features, hidden=hidden, n_eval=n_eval, seed=seed)
        rows.append(row(f"L2 lambda = {lam:g}", regularised.test_accuracy(), report))
    return rows
