"""Membership-inference experiments: the scenarios and the tables of Shokri et al. (2017) that the
book, Lab 4a and the benchmarks print.

A :class:`Scenario` is one target model with its data split and shadow models trained like it.
The tables rebuild, on :func:`labkit.data.make_purchase`, the paper's overfitting vs attack
success (Table II, :func:`overfitting_table`), the sources of shadow training data (Figure 9,
:func:`shadow_data_table`) and the lecture's mitigation table (:func:`mitigation_table`).
They combine the algorithms of :mod:`labkit.membership` with the core modules.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np


import torch
from torch import nn

from ..data import Data, Splits, load_digits, make_purchase, make_splits
from ..membership.shokri import (
    ShadowModels,
    shadow_splits,
    shokri_attack,
    train_shadow_models,
)
from ..membership.synthesis import (
    SynthesisResult,
    marginal_synthesis,
    noisy_data,
    synthesize_batch,
)
from ..metrics import (
    AttackReport,
    MembershipSet,
    evaluate_attack,
    membership_set,
    normalized_entropy,
)
from ..oracle import Oracle, OutputPolicy
from ..targets import TargetSetting, purchase_target_setting, train_models_like_target
from ..train import evaluate, predict_proba
from ..utils import check_int, make_generator, progress, spawn_seed

__all__ = [
    "SynthesisConfig",
    "MITIGATION_POLICIES",
    "Scenario",
    "make_scenario",
    "attack_scenario",
    "overfitting_table",
    "shadow_data_table",
        "mitigation_table",
    "data_vs_l2_table",
    "ForestModel",
    "model_family_table",
    "DataTargetSetting",
    "table2_settings",
    "dataset_table",
    "per_class_precision",
    "per_class_precision_table",
    "shadow_count_table",
]


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


def make_scenario(setting: TargetSetting | None = None, *, k: int = 4, seed: int | torch.Generator | None = 0) -> Scenario:
    """Build a :class:`Scenario`: split the population, train the target and ``k`` shadows.

    The population ``setting.data()`` is cut into the target's training set and test set
    (``n_train`` records each) and the attacker's pool (the rest). Target and shadows are trained
    in one batched ensemble: same recipe, independent members (this only saves time; the attack
    still sees the target through an :class:`~labkit.oracle.Oracle`).

    Args:
        setting: default :func:`purchase_target_setting`.
        k: number of shadow models.
        seed: seed or generator of the split and of the training.
    """
    setting = setting or purchase_target_setting()
    check_int("k", k, minimum=1)
    return _scenario_with(setting, k, seed, lambda sets, gen: train_models_like_target(sets, setting=setting, seed=gen))


def attack_scenario(
    scenario: Scenario,
    *,
    policy: OutputPolicy = OutputPolicy(),
    shadows: ShadowModels | None = None,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int | torch.Generator | None = 0,
) -> AttackReport:
    """Run Shokri et al.'s attack on a scenario's target behind an API with output ``policy``.

    Args:
        scenario: from :func:`make_scenario`.
        policy: the API's output policy, known to the attacker and applied to the shadows too.
        shadows: shadow models to use instead of ``scenario.shadows`` (e.g. trained on
            synthetic data).
        features, hidden: attack model options (:func:`train_attack_models`).
        n_eval: members and non-members evaluated (default: all).
        seed: seed or generator of the attack models and of the evaluation sample.

    Returns:
        :class:`AttackReport` on equal numbers of members and non-members.
    """
    gen = make_generator(seed)
    attack_seed, eval_seed = spawn_seed(gen), spawn_seed(gen)
    oracle = Oracle(scenario.target, policy)
    result = shokri_attack(oracle, scenario.splits.shadow, k=1, shadows=shadows or scenario.shadows, features=features, hidden=hidden, seed=attack_seed)
    ev = scenario.evaluation_set(n=n_eval, seed=eval_seed)
    return evaluate_attack(result.score_records(oracle, ev.x, ev.y), ev.is_member)


def _accuracy(model: nn.Module, data: Data) -> float:
    return evaluate(model, data.x, data.y)


def _true_label_confidence(model: nn.Module, data: Data) -> float:
    """The model's mean probability of each record's true label."""
    p = predict_proba(model, data.x)
    return float(p.gather(1, data.y.to(p.device).view(-1, 1)).mean())


def overfitting_table(
    n_classes: Sequence[int] = (2, 10, 20, 50, 100),
    *,
    setting: TargetSetting | None = None,
    k: int = 4,
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int | torch.Generator | None = 0,
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
    run_seed = spawn_seed(make_generator(seed))
    rows = []
    for C in progress(list(n_classes), desc="classes"):
        sc = make_scenario(dataclasses.replace(setting, n_classes=int(C)), k=k, seed=run_seed)
        report = attack_scenario(sc, features=features, hidden=hidden, n_eval=n_eval, seed=run_seed)
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
    seed: int | torch.Generator | None = 0,
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
    gen = make_generator(seed)
    run_seed = spawn_seed(gen)  # the scenario (when built here) and every attack use it
    scenario = scenario or make_scenario(k=1, seed=run_seed)
    setting = scenario.setting
    if 2 * setting.n_train > pool_size:
        raise ValueError(f"pool_size must be at least 2 * n_train = {2 * setting.n_train}, got {pool_size}")
    real_all = scenario.splits.shadow
    if pool_size > len(real_all):
        raise ValueError(f"pool_size must be at most {len(real_all)} (the attacker's real records), got {pool_size}")
    real = real_all.subset(torch.randperm(len(real_all), generator=gen)[:pool_size], name="real")
    oracle = Oracle(scenario.target)
    rows = []
    for source in progress(list(sources), desc="shadow data"):
        queries = float("nan")
        if source == "real":
            pool = real
        elif source.startswith("noisy"):
            pool = noisy_data(real, fraction=float(source.split()[1].rstrip("%")) / 100, seed=gen)
        elif source == "marginal":
            pool = marginal_synthesis(real, pool_size, seed=gen)
        elif source == "model-based":
            res = _synthesize_pool(oracle, pool_size, setting.n_classes, synthesis, gen)
            queries = res.queries_per_record
            pool = res.data(setting.n_classes, name="model-based")
            pool = pool.subset(torch.arange(min(pool_size, len(pool))))
        else:
            raise ValueError(f"unknown shadow data source {source!r}; use 'real', 'noisy 10%', 'noisy 20%', 'marginal' or 'model-based'")
        shadows = train_shadow_models(pool, k=k, setting=setting, seed=spawn_seed(gen))
        report = attack_scenario(scenario, shadows=shadows, features=features, hidden=hidden, n_eval=n_eval, seed=run_seed)
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
            iter_max=cfg.iter_max, p_one=cfg.p_one, seed=gen,
        )
        parts.append(res)
        have += res.n_records
        if have >= n:
            break
        rate = max(have / started, 0.05)  # success rate so far: start enough chains for the rest
        chains = int(math.ceil((n - have) / rate * 1.1))
    return SynthesisResult.concat(parts)


def mitigation_table(
    scenario: Scenario | None = None,
    *,
    policies: Mapping[str, OutputPolicy] = MITIGATION_POLICIES,
    l2: Sequence[float] = (1e-4, 1e-3, 1e-2),
    features: str = "sorted_label",
    hidden: Sequence[int] = (),
    n_eval: int | None = None,
    seed: int | torch.Generator | None = 0,
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
    gen = make_generator(seed)
    run_seed, retrain_seed = spawn_seed(gen), spawn_seed(gen)
    scenario = scenario or make_scenario(seed=run_seed)
    test_acc = scenario.test_accuracy()

    def row(name: str, acc: float, report: AttackReport) -> dict:
        return {"mitigation": name, "test acc": acc, "attack acc": report.accuracy, "precision": report.precision, "recall": report.recall, "AUC": report.auc}

    rows = []
    for name, policy in progress(list(policies.items()), desc="output policies"):
        report = attack_scenario(scenario, policy=policy, features=features, hidden=hidden, n_eval=n_eval, seed=run_seed)
        rows.append(row(name, test_acc, report))
    shadows = scenario.shadows
    for lam in progress(list(l2), desc="L2"):
        setting = dataclasses.replace(scenario.setting, weight_decay=float(lam))
        models = train_models_like_target([scenario.splits.target_train, *shadows.train], setting=setting, seed=retrain_seed)
        regularised = Scenario(setting, scenario.splits, models[0], ShadowModels(models[1:], shadows.train, shadows.test))
        report = attack_scenario(regularised, features=features, hidden=hidden, n_eval=n_eval, seed=run_seed)
        rows.append(row(f"L2 lambda = {lam:g}", regularised.test_accuracy(), report))
    return rows


def data_vs_l2_table(
    setting: TargetSetting | None = None,
    *,
    sizes: Sequence[int] = (2_000, 8_000),
    l2: Sequence[float] = (0.0, 1e-2),
    n_test: int = 4_000,
    seed: int | torch.Generator | None = 0,
) -> list[dict]:
    """Generalization gap with more data or with an L2 penalty: the cure for overfitting.

    For every training-set size and every ``weight_decay = lambda``, one model of the target's
    architecture and recipe (``setting``, default :func:`purchase_target_setting`) trains on the
    first ``n`` records of the population; all are tested on its last ``n_test`` records, which
    none trains on.

    Returns:
        rows ``{"records/class", "lambda", "train acc", "test acc", "gap"}``.

    Shokri et al. (2017), Section VI (regularization as a mitigation).
    """
    setting = setting or purchase_target_setting()
    data = setting.data()
    if max(sizes) + n_test > len(data):
        raise ValueError(f"the largest training set plus n_test must fit in the population ({len(data)} records), got {max(sizes)} + {n_test}")
    test = data.subset(torch.arange(len(data) - n_test, len(data)))
    run_seed = spawn_seed(make_generator(seed))
    rows = []
    for n in progress([int(s) for s in sizes], desc="training-set sizes"):
        train = data.subset(torch.arange(n))
        for lam in l2:
            model = train_models_like_target([train], setting=dataclasses.replace(setting, weight_decay=float(lam)), seed=run_seed)[0]
            train_acc, test_acc = _accuracy(model, train), _accuracy(model, test)
            rows.append({"records/class": n // setting.n_classes, "lambda": float(lam), "train acc": train_acc, "test acc": test_acc, "gap": train_acc - test_acc})
    return rows


# ============================================================================ more of the paper's evaluations
class ForestModel(nn.Module):
    """A scikit-learn random forest behind the module interface of labkit's models.

    ``forward`` returns the logarithms of the forest's class probabilities, so that
    :func:`labkit.train.predict_proba` (and so an :class:`~labkit.oracle.Oracle`) answers with the
    forest's own probabilities: the same prediction API as an MLP's.

    Args:
        n_features, n_classes: input width and number of classes.
        n_estimators, max_features: the forest's options (scikit-learn's meaning).
        seed: the forest's ``random_state`` (bootstrap samples and feature draws): an int as it
            is, a generator or None through one draw.
    """

    def __init__(self, n_features: int, n_classes: int, *, n_estimators: int = 100, max_features: str | float = "sqrt", seed: int | torch.Generator | None = 0) -> None:
        super().__init__()
        from sklearn.ensemble import RandomForestClassifier

        self.input_shape = (int(n_features),)
        self.n_classes = int(n_classes)
        random_state = seed if isinstance(seed, int) else spawn_seed(make_generator(seed)) % 2**31
        self.forest = RandomForestClassifier(n_estimators=n_estimators, max_features=max_features, random_state=random_state, n_jobs=1)

    def fit(self, data: Data) -> "ForestModel":
        """Fit the forest on ``data`` (features ``(n, d)``, labels ``(n,)``); returns self."""
        self.forest.fit(data.x.cpu().numpy(), data.y.cpu().numpy())
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, d) -> (N, C) log-probabilities
        p = np.zeros((x.shape[0], self.n_classes))
        p[:, self.forest.classes_] = self.forest.predict_proba(x.detach().cpu().numpy())  # classes never seen keep 0
        return torch.log(torch.as_tensor(p, dtype=torch.float32).clamp_min(1e-12)).to(x.device)


def _scenario_with(setting: TargetSetting, k: int, seed, train: Callable[[list[Data], torch.Generator], list[nn.Module]]) -> Scenario:
    """:func:`make_scenario`'s splits (the same seed gives the same records), with models from ``train``."""
    data = setting.data()
    n = setting.n_train
    if len(data) < 4 * n:
        raise ValueError(f"the population ({len(data)} records) must hold at least 4 * n_train = {4 * n} records")
    gen = make_generator(seed)
    splits = make_splits(data, target_train=n, target_test=n, shadow=len(data) - 2 * n, seed=spawn_seed(gen))
    train_sets, test_sets = shadow_splits(splits.shadow, k=k, n_train=n, seed=gen)
    models = train([splits.target_train, *train_sets], gen)
    return Scenario(setting, splits, models[0], ShadowModels(models=models[1:], train=train_sets, test=test_sets))


MODEL_FAMILIES = ("logistic regression", "random forest", "MLP")


def model_family_table(
    setting: TargetSetting | None = None,
    *,
    families: Sequence[str] = MODEL_FAMILIES,
    k: int = 2,
    n_estimators: int = 500,
    seed: int | torch.Generator | None = 0,
) -> list[dict]:
    """The same data through several model families, each attacked with shadows of its own family.

    Target and shadows of one row share a family and a recipe, as when the attacker trains its
    shadows on the same ML service: ``"MLP"`` is ``setting``'s network, ``"logistic regression"``
    the same recipe without hidden layer (a softmax regression), ``"random forest"`` a
    scikit-learn forest of ``n_estimators`` trees (:class:`ForestModel`; with 100 classes and 20
    records per class a forest needs hundreds of trees before its votes generalize). Every row
    uses the same records (the splits of :func:`make_scenario` with the same seed).

    Returns:
        rows ``{"model", "train acc", "test acc", "gap", "conf members", "conf non-members",
        "precision", "recall", "accuracy", "AUC"}``; the two ``conf`` columns are the target's mean
        probability of the true label on its members and on its non-members.

    Shokri et al. (2017), Table I and Figure 7 (models of different ML services on Purchase).
    """
    setting = setting or purchase_target_setting()
    run_seed = spawn_seed(make_generator(seed))

    def forests(sets: list[Data], gen: torch.Generator) -> list[nn.Module]:
        return [ForestModel(setting.n_features, setting.n_classes, n_estimators=n_estimators, seed=gen).fit(d).eval() for d in sets]

    trainers = {
        "MLP": lambda sets, gen: train_models_like_target(sets, setting=setting, seed=gen),
        "logistic regression": lambda sets, gen: train_models_like_target(sets, setting=dataclasses.replace(setting, hidden=()), seed=gen),
        "random forest": forests,
    }
    rows = []
    for family in progress(list(families), desc="model families"):
        if family not in trainers:
            raise ValueError(f"unknown model family {family!r}; use one of {sorted(trainers)}")
        sc = _scenario_with(setting, k, run_seed, trainers[family])
        report = attack_scenario(sc, seed=run_seed)
        train_acc, test_acc = sc.train_accuracy(), sc.test_accuracy()
        conf_in, conf_out = (_true_label_confidence(sc.target, d) for d in (sc.splits.target_train, sc.splits.target_test))
        rows.append({"model": family, "train acc": train_acc, "test acc": test_acc, "gap": train_acc - test_acc,
                     "conf members": conf_in, "conf non-members": conf_out,
                     "precision": report.precision, "recall": report.recall, "accuracy": report.accuracy, "AUC": report.auc})
    return rows


@dataclass(frozen=True)
class DataTargetSetting(TargetSetting):
    """A :class:`~labkit.targets.TargetSetting` whose population is a given dataset, not
    :func:`~labkit.data.make_purchase`: ``loader()`` returns it (``n_features`` and ``n_classes``
    must match it)."""

    loader: Callable[[], Data] | None = None  # e.g. labkit.data.load_digits

    def data(self) -> Data:
        if self.loader is None:
            return super().data()
        data = self.loader()
        if data.x.shape[1:] != (self.n_features,) or data.n_classes != self.n_classes:
            raise ValueError(f"the loader gives {tuple(data.x.shape[1:])} features and {data.n_classes} classes, the setting says {self.n_features} and {self.n_classes}")
        return data


def table2_settings() -> dict[str, TargetSetting]:
    """Stand-ins for the datasets of Shokri et al.'s Table II that the course can ship.

    * ``"digits (MNIST stand-in)"``: scikit-learn's 8x8 digits (1,797 records), 400 per training set;
    * ``"Location stand-in"``: synthetic, the shape of Location (446 binary features, 30 classes,
      1,600 training records);
    * ``"Adult stand-in"``: synthetic, a binary task on 14 binary attributes whose classes
      overlap (Adult: 14 attributes, "income over $50K?");
    * ``"Purchase (C)"``: :func:`purchase_target_setting` with C classes, C in 2, 10, 20, 50, 100.

    All use the target's MLP (600 -> 128 -> C becomes d -> 128 -> C) and Adam recipe.
    """
    base = purchase_target_setting()
    out: dict[str, TargetSetting] = {
        "digits (MNIST stand-in)": DataTargetSetting(n_features=64, n_classes=10, n_train=400, epochs=60, loader=load_digits),
        "Location stand-in": dataclasses.replace(base, n_samples=8_000, n_features=446, n_classes=30, n_train=1_600, strength=0.5, data_seed=1),
        "Adult stand-in": dataclasses.replace(base, n_samples=10_000, n_features=14, n_classes=2, n_train=2_000, strength=1.4, data_seed=2),
    }
    for C in (2, 10, 20, 50, 100):
        out[f"Purchase ({C})"] = dataclasses.replace(base, n_classes=C)
    return out


def dataset_table(settings: Mapping[str, TargetSetting] | None = None, *, k: int = 2, seed: int | torch.Generator | None = 0) -> list[dict]:
    """Train and test accuracy of a target per dataset, and the precision of the attack on it.

    Args:
        settings: name -> target setting (default :func:`table2_settings`).
        k: shadow models per target.

    Returns:
        rows ``{"dataset", "train records", "train acc", "test acc", "precision", "recall", "AUC"}``.

    Shokri et al. (2017), Table II.
    """
    settings = table2_settings() if settings is None else settings
    run_seed = spawn_seed(make_generator(seed))
    rows = []
    for name, setting in progress(list(settings.items()), desc="datasets"):
        sc = make_scenario(setting, k=k, seed=run_seed)
        report = attack_scenario(sc, seed=run_seed)
        rows.append({"dataset": name, "train records": setting.n_train, "train acc": sc.train_accuracy(), "test acc": sc.test_accuracy(),
                     "precision": report.precision, "recall": report.recall, "AUC": report.auc})
    return rows


def per_class_precision(scores: torch.Tensor, is_member: torch.Tensor, y: torch.Tensor, *, n_classes: int, threshold: float = 0.5) -> torch.Tensor:
    """Precision of the decision ``score > threshold`` among the records of each class.

    Args:
        scores: float ``(N,)`` membership scores; is_member: bool ``(N,)``; y: int64 ``(N,)`` labels.
        n_classes: C.

    Returns:
        float64 ``(C,)``: for class c, the fraction of members among its records called "in";
        NaN for a class with no record called "in".

    Shokri et al. (2017), Figure 4 (precision per class).
    """
    scores = torch.as_tensor(scores).double().flatten()
    member = torch.as_tensor(is_member).bool().flatten()
    y = torch.as_tensor(y).long().flatten()
    if not scores.shape == member.shape == y.shape:
        raise ValueError(f"scores, is_member and y must have the same length, got {scores.shape[0]}, {member.shape[0]}, {y.shape[0]}")
    called = scores > threshold
    hits = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, y, (called & member).double())
    calls = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, y, called.double())
    return torch.where(calls > 0, hits / calls.clamp_min(1), torch.full_like(calls, float("nan")))


def per_class_precision_table(setting: TargetSetting | None = None, *, sizes: Sequence[int] = (1_000, 2_000, 4_000), k: int = 2, seed: int | torch.Generator | None = 0) -> list[dict]:
    """The spread of the attack's precision over classes, for targets trained on more or less data.

    For each training-set size ``n`` (target and shadows alike), a :func:`make_scenario` and the
    attack on ``n`` members and ``n`` non-members.

    Returns:
        rows ``{"train records", "test acc", "min", "25%", "median", "75%", "max", "recall",
        "per class"}``: quantiles of the per-class precision (classes with a record called "in"),
        the overall recall, and the ``(C,)`` per-class precisions.

    Shokri et al. (2017), Figure 4.
    """
    setting = setting or purchase_target_setting()
    run_seed = spawn_seed(make_generator(seed))
    rows = []
    for n in progress([int(s) for s in sizes], desc="training-set sizes"):
        sc = make_scenario(dataclasses.replace(setting, n_train=n), k=k, seed=run_seed)
        gen = make_generator(run_seed)
        attack_seed, eval_seed = spawn_seed(gen), spawn_seed(gen)  # as attack_scenario draws them
        oracle = Oracle(sc.target)
        result = shokri_attack(oracle, sc.splits.shadow, k=1, shadows=sc.shadows, seed=attack_seed)
        ev = sc.evaluation_set(seed=eval_seed)
        scores = result.score_records(oracle, ev.x, ev.y)
        prec = per_class_precision(scores, ev.is_member, ev.y, n_classes=setting.n_classes)
        q = torch.nanquantile(prec, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)).tolist()
        rows.append({"train records": n, "test acc": sc.test_accuracy(), "min": q[0], "25%": q[1], "median": q[2], "75%": q[3], "max": q[4],
                     "recall": evaluate_attack(scores, ev.is_member).recall, "per class": prec})
    return rows


def shadow_count_table(scenario: Scenario | None = None, *, counts: Sequence[int] = (1, 2, 4, 8), seed: int | torch.Generator | None = 0) -> list[dict]:
    """Attack quality and cost against the number of shadow models.

    For each count ``k``, ``k`` new shadows are trained like the target on the attacker's pool
    of the scenario, and the attack is run with them; the time covers training the shadows, building
    the attack set and training the attack models.

    Returns:
        rows ``{"shadows", "attack records", "precision", "recall", "accuracy", "AUC", "seconds"}``.

    Shokri et al. (2017), Section V-A: more shadow models, a more accurate attack, at a higher cost.
    """
    gen = make_generator(seed)
    run_seed = spawn_seed(gen)
    scenario = scenario or make_scenario(k=1, seed=run_seed)
    rows = []
    for count in progress([check_int("count", c, minimum=1) for c in counts], desc="shadow counts"):
        start = time.perf_counter()
        shadows = train_shadow_models(scenario.splits.shadow, k=count, setting=scenario.setting, seed=spawn_seed(gen))
        report = attack_scenario(scenario, shadows=shadows, seed=run_seed)  # includes scoring the evaluation set
        seconds = time.perf_counter() - start
        rows.append({"shadows": count, "attack records": 2 * count * scenario.setting.n_train, "precision": report.precision,
                     "recall": report.recall, "accuracy": report.accuracy, "AUC": report.auc, "seconds": seconds})
    return rows
