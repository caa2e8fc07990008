"""The Chapter 4 evaluations of labkit.experiments.membership: model families (Table I), datasets
(Table II), per-class precision (Fig. 4), the number of shadow models, data against L2."""
import dataclasses

import pytest
import torch

from labkit.data import make_purchase
from labkit.experiments import membership as exm
from labkit.oracle import Oracle
from labkit.targets import TargetSetting
from labkit.train import predict_proba

TINY = TargetSetting(n_samples=800, n_features=30, n_classes=4, n_train=100, hidden=(32,), epochs=30, strength=1.0)


def test_per_class_precision_on_a_hand_worked_example():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.3])
    member = torch.tensor([True, False, True, True, True, False, False])
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    prec = exm.per_class_precision(scores, member, y, n_classes=4)
    # class 0: three called "in", two members; class 1: one called, a member; classes 2, 3: none called
    assert prec[:2].tolist() == pytest.approx([2 / 3, 1.0])
    assert torch.isnan(prec[2:]).all()
    with pytest.raises(ValueError, match="same length"):
        exm.per_class_precision(scores[:3], member, y, n_classes=4)


def test_a_forest_answers_through_an_oracle_with_its_own_probabilities():
    data = make_purchase(300, n_features=20, n_classes=4, seed=0)
    forest = exm.ForestModel(20, 4, n_estimators=5, seed=0).fit(data)
    p_oracle = Oracle(forest)(data.x[:50])
    p_sklearn = torch.as_tensor(forest.forest.predict_proba(data.x[:50].numpy()), dtype=torch.float32)
    assert torch.allclose(p_oracle, p_sklearn, atol=1e-6)
    assert torch.allclose(predict_proba(forest, data.x[:50]), p_sklearn, atol=1e-6)


def test_a_forest_fills_in_classes_its_training_set_lacks():
    data = make_purchase(200, n_features=10, n_classes=3, seed=1)
    only_two = data.subset(torch.nonzero(data.y < 2).flatten())
    forest = exm.ForestModel(10, 3, n_estimators=3, seed=0).fit(only_two)
    p = predict_proba(forest, data.x[:20])
    assert p.shape == (20, 3) and p[:, 2].max() < 1e-6 and torch.allclose(p.sum(1), torch.ones(20), atol=1e-5)


def test_model_family_table_uses_the_same_records_for_every_family():
    rows = exm.model_family_table(TINY, k=1, n_estimators=10, seed=0)
    assert [r["model"] for r in rows] == ["logistic regression", "random forest", "MLP"]
    for r in rows:
        assert r["gap"] == pytest.approx(r["train acc"] - r["test acc"])
        assert 0 <= r["precision"] <= 1 and 0 <= r["AUC"] <= 1
    forest = next(r for r in rows if r["model"] == "random forest")
    assert forest["train acc"] > 0.95  # a forest fits its training set
    # a tree grown on a record votes for its label: members get more confidence than non-members
    assert 0 <= forest["conf non-members"] < forest["conf members"] <= 1
    with pytest.raises(ValueError, match="unknown model family"):
        exm.model_family_table(TINY, families=("svm",), k=1)


def test_table2_settings_name_their_stand_ins_and_keep_the_purchase_rows():
    settings = exm.table2_settings()
    assert [n for n in settings if n.startswith("Purchase")] == [f"Purchase ({c})" for c in (2, 10, 20, 50, 100)]
    assert sum("stand-in" in n for n in settings) == 3
    location = settings["Location stand-in"]
    assert (location.n_features, location.n_classes, location.n_train) == (446, 30, 1600)
    for s in settings.values():
        assert len(s.data()) >= 4 * s.n_train  # make_scenario's requirement


def test_a_data_setting_checks_its_loader():
    bad = exm.DataTargetSetting(n_features=5, n_classes=10, loader=lambda: make_purchase(50, n_features=6, n_classes=10, seed=0))
    with pytest.raises(ValueError, match="features"):
        bad.data()


def test_dataset_table_attacks_each_setting():
    rows = exm.dataset_table({"tiny": TINY, "tiny, 2 classes": dataclasses.replace(TINY, n_classes=2)}, k=1, seed=0)
    assert [r["dataset"] for r in rows] == ["tiny", "tiny, 2 classes"]
    assert all(r["train records"] == 100 and 0 <= r["precision"] <= 1 for r in rows)


def test_per_class_precision_table_summarises_every_size():
    rows = exm.per_class_precision_table(TINY, sizes=(50, 100), k=1, seed=0)
    assert [r["train records"] for r in rows] == [50, 100]
    for r in rows:
        assert r["per class"].shape == (4,)
        assert r["min"] <= r["25%"] <= r["median"] <= r["75%"] <= r["max"]


def test_shadow_count_table_counts_records_and_time():
    sc = exm.make_scenario(TINY, k=1, seed=0)
    rows = exm.shadow_count_table(sc, counts=(1, 3), seed=0)
    assert [r["attack records"] for r in rows] == [2 * 100, 6 * 100]
    assert all(r["seconds"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)


def test_data_vs_l2_table_trains_on_disjoint_records():
    rows = exm.data_vs_l2_table(TINY, sizes=(100, 200), l2=(0.0, 1e-2), n_test=300, seed=0)
    assert [(r["records/class"], r["lambda"]) for r in rows] == [(25, 0.0), (25, 0.01), (50, 0.0), (50, 0.01)]
    with pytest.raises(ValueError, match="must fit"):
        exm.data_vs_l2_table(TINY, sizes=(600,), n_test=300)
