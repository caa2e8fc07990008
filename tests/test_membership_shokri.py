"""Shokri et al. (2017) membership inference: attack training set, per-class attack models, evaluation."""
import dataclasses

import pytest
import torch
from handset import Linear, gen

from labkit.data import Data, make_splits
from labkit.experiments.membership import attack_scenario, make_scenario
from labkit.membership import (
    AttackSet,
    attack_features,
    build_attack_set,
    prediction_vectors,
    shokri_attack,
    train_attack_models,
)
from labkit.metrics import evaluate_attack, membership_set
from labkit.oracle import Oracle, OutputPolicy
from labkit.targets import purchase_target_setting, train_models_like_target
from labkit.train import predict_proba


def random_data(n, d, C, seed):
    g = gen(seed)
    return Data(torch.rand(n, d, generator=g), torch.randint(0, C, (n,), generator=g), C)


# ----------------------------------------------------------------------------- attack training set
def test_attack_set_holds_each_shadows_outputs_with_in_and_out_labels():
    shadows = [Linear(torch.randn(3, 6, generator=gen(i)), torch.zeros(3)) for i in range(2)]
    train = [random_data(7, 6, 3, 10 + i) for i in range(2)]
    test = [random_data(7, 6, 3, 20 + i) for i in range(2)]
    aset = build_attack_set(shadows, train, test)
    assert len(aset) == 28 and aset.y_hat.shape == (28, 3)
    assert int(aset.member.sum()) == 14  # as many "in" as "out"
    # order: shadow 0 in, shadow 0 out, shadow 1 in, shadow 1 out
    blocks = [(0, train[0], True), (0, test[0], False), (1, train[1], True), (1, test[1], False)]
    for b, (i, data, is_in) in enumerate(blocks):
        rows = slice(7 * b, 7 * (b + 1))
        assert torch.equal(aset.y[rows], data.y)
        assert bool((aset.member[rows] == is_in).all())
        assert torch.allclose(aset.y_hat[rows], predict_proba(shadows[i], data.x), atol=1e-6)
    part = aset.for_class(1)
    assert bool((part.y == 1).all()) and len(part) == int((aset.y == 1).sum())
    with pytest.raises(ValueError, match="same size"):
        build_attack_set(shadows[:1], train[:1], [random_data(6, 6, 3, 0)])


def test_label_only_answers_become_one_hot_vectors():
    shadow = Linear(torch.randn(4, 5, generator=gen(0)), torch.zeros(4))
    api = Oracle(shadow, output="label")
    train, test = random_data(9, 5, 4, 1), random_data(9, 5, 4, 2)
    aset = build_attack_set([api], [train], [test])
    assert torch.equal(aset.y_hat.sum(1), torch.ones(18))
    assert torch.equal(aset.y_hat.argmax(1), torch.cat([api(train.x), api(test.x)]))
    assert torch.equal(prediction_vectors(torch.tensor([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(ValueError, match="labels"):
        prediction_vectors(torch.tensor([3]), 3)


def test_attack_features():
    y_hat = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    y = torch.tensor([2, 0])
    assert torch.equal(attack_features(y_hat, y, features="raw"), y_hat)
    assert torch.equal(attack_features(y_hat, y, features="sorted"), torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]))
    assert torch.equal(attack_features(y_hat, y), torch.tensor([[0.7, 0.2, 0.1, 0.2], [0.5, 0.3, 0.2, 0.5]]))
    with pytest.raises(ValueError, match="features"):
        attack_features(y_hat, y, features="log")


# ----------------------------------------------------------------------------- per-class attack models
def _rule_attack_set(n, seed):
    """Class 0: members are confident in their label; class 1: the opposite rule; class 2: no signal."""
    g = gen(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    y_hat = torch.softmax(torch.randn(n, 3, generator=g) * 2, dim=1)
    own = y_hat.gather(1, y[:, None])[:, 0]
    member = torch.where(y == 0, own > 0.4, torch.where(y == 1, own < 0.4, torch.rand(n, generator=g) < 0.5))
    return AttackSet(y_hat, y, member)


def test_one_attack_model_per_class_learns_each_class_rule():
    train, test = _rule_attack_set(3000, 0), _rule_attack_set(3000, 1)
    attack = train_attack_models(train, epochs=400, seed=0)
    assert attack.n_classes == 3
    scores = attack.scores(test.y_hat, test.y)
    for c, expected in ((0, 0.9), (1, 0.9)):
        idx = test.y == c
        acc = float(((scores[idx] > 0.5) == test.member[idx]).float().mean())
        assert acc > expected, f"class {c}: accuracy {acc:.3f}"
    idx = test.y == 2
    assert abs(float(((scores[idx] > 0.5) == test.member[idx]).float().mean()) - 0.5) < 0.1
    # One model for everyone cannot follow opposite rules. To give it the same information, file
    # every record under class 0 after swapping its label's column into column 0.
    def as_class_0(a):
        rows = torch.arange(len(a))
        y_hat = a.y_hat.clone()
        y_hat[rows, 0], y_hat[rows, a.y] = a.y_hat[rows, a.y], a.y_hat[rows, 0]
        return AttackSet(y_hat, torch.zeros_like(a.y), a.member)

    pooled = train_attack_models(as_class_0(train), epochs=400)
    moved = as_class_0(test)
    pooled_scores = pooled.scores(moved.y_hat, moved.y)
    idx = test.y < 2
    assert float(((pooled_scores[idx] > 0.5) == test.member[idx]).float().mean()) < 0.75


def test_training_all_classes_together_equals_training_each_class_alone():
    aset = _rule_attack_set(900, 3)
    joint = train_attack_models(aset, epochs=50, seed=4)
    for c in range(3):
        alone = train_attack_models(aset.for_class(c), epochs=50, seed=4)
        assert [i for i, m in enumerate(alone.models) if m is not None] == [c]
        part = aset.for_class(c)
        assert torch.allclose(joint.scores(part.y_hat, part.y), alone.scores(part.y_hat, part.y), atol=1e-4)
        # a class without training records scores 0.5
        other = torch.full((5,), (c + 1) % 3)
        assert torch.equal(alone.scores(aset.y_hat[:5], other), torch.full((5,), 0.5))


# ----------------------------------------------------------------------------- evaluation
def test_evaluate_attack_on_a_hand_worked_example():
    scores = torch.tensor([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    member = torch.tensor([True, True, True, False, False, False])
    r = evaluate_attack(scores, member)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3) and r.accuracy == pytest.approx(4 / 6)
    assert r.auc == pytest.approx(8 / 9)
    assert r.tpr_at_1pct == pytest.approx(2 / 3)  # no false positive allowed: threshold above 0.6
    r = evaluate_attack(scores, member, threshold=0.25)
    assert r.recall == pytest.approx(1.0) and r.precision == pytest.approx(3 / 4)


def test_membership_set_is_balanced_and_shuffled():
    members, non = random_data(30, 4, 2, 0), random_data(50, 4, 2, 1)
    ev = membership_set(members, non, seed=0)
    assert int(ev.is_member.sum()) == 30 and len(ev.y) == 60
    assert not bool(ev.is_member[:30].all())  # shuffled
    for x, is_in in zip(ev.x, ev.is_member):
        source = members.x if is_in else non.x
        assert bool((source == x).all(1).any())
    assert torch.equal(membership_set(members, non, n=10, seed=5).x, membership_set(members, non, n=10, seed=5).x)
    with pytest.raises(ValueError, match="n must"):
        membership_set(members, non, n=31)


# ----------------------------------------------------------------------------- the whole attack
SMALL = dataclasses.replace(purchase_target_setting(), n_samples=2400, n_classes=10, strength=0.5, n_train=300, epochs=40)


def test_shokri_attack_beats_chance_on_a_small_overfit_target():
    splits = make_splits(SMALL.data(), target_train=300, target_test=300, shadow=1800, seed=0)
    target = train_models_like_target([splits.target_train], setting=SMALL, seed=1)[0]
    assert predict_proba(target, splits.target_train.x).argmax(1).eq(splits.target_train.y).float().mean() > 0.99
    oracle = Oracle(target)
    result = shokri_attack(oracle, splits.shadow, k=3, setting=SMALL, seed=2)
    assert len(result.shadows) == 3 and len(result.attack_set) == 3 * 600
    ev = membership_set(splits.target_train, splits.target_test, seed=3)
    before = oracle.queries
    scores = result.score_records(oracle, ev.x, ev.y)
    assert oracle.queries - before == 600  # the target is seen through its API only
    report = evaluate_attack(scores, ev.is_member)
    assert report.auc > 0.7 and report.accuracy > 0.6, report
    # the same seed rebuilds the same attack
    again = shokri_attack(oracle, splits.shadow, k=3, setting=SMALL, seed=2)
    assert torch.allclose(again.score_records(oracle, ev.x, ev.y), scores, atol=1e-5)
    # a label-only API: the shadows' answers are one-hot too
    label_api = Oracle(target, output="label")
    labelled = shokri_attack(label_api, splits.shadow, k=1, setting=SMALL, shadows=result.shadows, seed=2)
    assert torch.equal(labelled.attack_set.y_hat.sum(1), torch.ones(len(labelled.attack_set)))


@pytest.mark.slow
def test_purchase_100_target_and_attack_match_the_lecture():
    """Purchase-like, 100 classes: train >= 0.99, test in [0.6, 0.75], attack AUC >= 0.88; label-only near 0.66."""
    scenario = make_scenario(purchase_target_setting(), k=4, seed=0)
    train_acc, test_acc = scenario.train_accuracy(), scenario.test_accuracy()
    assert train_acc >= 0.99 and 0.6 <= test_acc <= 0.75
    report = attack_scenario(scenario)
    assert report.auc >= 0.88 and report.precision > 0.8, report
    report_label = attack_scenario(scenario, policy=OutputPolicy(output="label"))
    # only right/wrong is left: accuracy about (1 + train acc - test acc) / 2
    assert report_label.accuracy == pytest.approx((1 + train_acc - test_acc) / 2, abs=0.05)
