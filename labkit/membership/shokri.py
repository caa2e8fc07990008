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

The experiments that rebuild the paper's tables on :func:`labkit.data.make_purchase` (overfitting
vs attack success, Table II; shadow data sources, Figure 9; the lecture's mitigation table) are in
:mod:`labkit.experiments.membership`; the attack's evaluation (:func:`labkit.metrics.evaluate_attack`)
is in :mod:`labkit.metrics`.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Data
from ..models import MLP, LogisticRegression
from ..oracle import Oracle, OutputPolicy
from ..targets import TargetSetting, purchase_target_setting, train_models_like_target
from ..train import train_loop
from ..utils import as_labels, check_int, make_generator, outputs_of, spawn_seed

__all__ = [
    "ShadowModels",
    "train_shadow_models",
    "shadow_splits",
    "prediction_vectors",
    "AttackSet",
    "build_attack_set",
    "attack_features",
    "PerClassAttack",
    "train_attack_models",
    "ShokriAttack",
    "shokri_attack",
    "attack_through",
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
    check_int("k", k, minimum=1)
    n_train = check_int("n_train", setting.n_train if n_train is None else n_train, minimum=1)
    if 2 * n_train > len(pool):
        raise ValueError(f"each shadow needs 2 * n_train = {2 * n_train} records (train and test), but the pool has {len(pool)}")
    gen = make_generator(seed)
    train, test = shadow_splits(pool, k=k, n_train=n_train, seed=gen)
    models = train_models_like_target(train, setting=setting, seed=gen)
    return ShadowModels(models=models, train=train, test=test)


def shadow_splits(pool: Data, *, k: int, n_train: int, seed: int | torch.Generator | None = 0) -> tuple[list[Data], list[Data]]:
    """``k`` pairs of disjoint random subsets of ``pool``, ``n_train`` records each: shadow ``i``'s
    ``D_shadow^{train,i}`` and ``D_shadow^{test,i}`` (one ``randperm`` of the pool per shadow).

    Returns:
        the ``k`` training sets and the ``k`` test sets.
    """
    gen = make_generator(seed)
    train, test = [], []
    for i in range(k):
        perm = torch.randperm(len(pool), generator=gen)
        train.append(pool.subset(perm[:n_train], name=f"shadow{i}/train"))
        test.append(pool.subset(perm[n_train : 2 * n_train], name=f"shadow{i}/test"))
    return train, test


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
        return F.one_hot(as_labels(answers, name="labels", n_classes=n_classes), n_classes).float()
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
    ### BEGIN SOLUTION lab4a_membership
    if not (len(f_shadow) == len(D_train) == len(D_test)) or len(f_shadow) == 0:
        raise ValueError(f"f_shadow, D_train and D_test must have the same non-zero length, got {len(f_shadow)}, {len(D_train)}, {len(D_test)}")
    y_hat, ys, member = [], [], []
    for i, (f, tr, te) in enumerate(zip(f_shadow, D_train, D_test)):
        if len(tr) != len(te):
            raise ValueError(f"shadow {i}: the 'out' set must have the same size as the training set, got {len(te)} and {len(tr)}")
        for data, is_in in ((tr, True), (te, False)):
            y_hat.append(prediction_vectors(outputs_of(f, data.x, name=f"f_shadow[{i}]"), data.n_classes).cpu())
            ys.append(data.y.cpu())
            member.append(torch.full((len(data),), is_in))
    return AttackSet(torch.cat(y_hat), torch.cat(ys), torch.cat(member))
    ### END SOLUTION


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
    y = as_labels(y, name="y", n_classes=y_hat.shape[1], n=y_hat.shape[0]).to(y_hat.device)
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
        y = as_labels(y, name="y", n_classes=self.n_classes, n=y_hat.shape[0]).cpu()
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
    ### BEGIN SOLUTION lab4a_membership
    if len(attack_set) == 0:
        raise ValueError("attack_set is empty")
    check_int("epochs", epochs, minimum=1)
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

    # Each class's loss is its own mean; summing over classes keeps the classes independent.
    weight = w / count[:, None]

    def loss_fn(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logit(x), target, weight=weight, reduction="sum")

    train_loop(params, lambda: [(xs, mp)], loss_fn, epochs=epochs, lr=lr, weight_decay=weight_decay, desc="attack models")
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
    ### END SOLUTION


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


def attack_through(
    policy: OutputPolicy,
    target: nn.Module,
    shadows: ShadowModels,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    build: Callable[..., AttackSet] = build_attack_set,
    train: Callable[..., PerClassAttack] = train_attack_models,
    seed: int | torch.Generator | None = 0,
) -> torch.Tensor:
    """Membership scores of the records ``(x, y)`` against ``target`` behind an API with ``policy``.

    The attacker knows the policy and adapts: its shadows answer through the same policy, so the
    attack models learn from what the API shows (Shokri et al. 2017, Section VI).

    Args:
        policy: the API's :class:`~labkit.oracle.OutputPolicy`.
        target: the target model; shadows: trained shadow models and their data.
        x, y: the records to score (inputs and true labels).
        build: builds the attack set from the shadows' APIs (:func:`build_attack_set`).
        train: trains the per-class attack models, called as ``train(attack_set, seed=seed)``
            (:func:`train_attack_models`).
        seed: seed or generator of the attack models.

    Returns:
        float32 ``(N,)`` in ``[0, 1]``.
    """
    ### BEGIN SOLUTION lab4a_membership
    target_api = Oracle(target, policy)
    apis = [Oracle(m, policy) for m in shadows.models]
    attack = train(build(apis, shadows.train, shadows.test), seed=seed)
    return attack.score_records(target_api, x, y)
    ### END SOLUTION
