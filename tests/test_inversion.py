"""Tests of labkit.inversion (MI-FACE, Fredrikson et al. 2015)."""
import math

import pytest
import torch
from torch import nn

from labkit.data import load_digits, load_olivetti_faces, make_splits
from labkit.inversion import (
    InversionResult,
    class_means,
    clip_to_range,
    compose,
    gaussian_smoothing,
    invert_classes,
    l2_penalty,
    mi_face,
    reconstruction_score,
    softmax_probabilities,
    total_variation,
)
from labkit.models import MLP
from labkit.train import fit, predict_proba


class OneFeatureLogit(nn.Module):
    """Hand-set 2-class model on 2 features: logits [0, x_1], so f~_1(x) = sigmoid(x_1)."""

    input_shape = (2,)
    n_classes = 2

    def forward(self, x):
        return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], dim=1)


def scripted_process(points):
    """A PROCESS that ignores its input and returns the next scripted iterate."""
    queue = [torch.tensor([[p, 0.0]]) for p in points]

    def process(x):
        return queue.pop(0)

    return process


def cost_at(x1):
    return 1.0 - 1.0 / (1.0 + math.exp(-x1))


def test_first_step_is_a_gradient_step_from_zero():
    res = mi_face(OneFeatureLogit(), 1, alpha=1, beta=5, gamma=0.0, lam=2.0)
    # c(x) = 1 - sigmoid(x_1); grad at 0 is (-1/4, 0); x_1 = 0 - 2 * grad = (0.5, 0)
    assert res.costs[0] == pytest.approx(0.5)
    assert res.costs[1] == pytest.approx(cost_at(0.5), abs=1e-6)
    assert torch.allclose(res.x, torch.tensor([0.5, 0.0]))
    assert res.stop == "alpha" and res.n_steps == 1 and res.best_step == 1


def test_gamma_reached_stops_early():
    res = mi_face(OneFeatureLogit(), 1, alpha=1000, beta=5, gamma=0.2, lam=4.0)
    assert res.stop == "gamma"
    assert res.costs[-1] <= 0.2 < res.costs[-2]
    assert res.n_steps < 1000
    assert res.cost == res.costs[-1] and res.best_step == res.n_steps
    # the returned x is the last iterate: its cost is c(x) recomputed by hand
    assert cost_at(float(res.x[0])) == pytest.approx(res.cost, abs=1e-6)


def test_alpha_caps_the_number_of_steps():
    res = mi_face(OneFeatureLogit(), 1, alpha=7, beta=3, gamma=-1.0, lam=0.1)
    assert res.stop == "alpha"
    assert len(res.costs) == 8  # c(x_0) .. c(x_7)
    assert all(b < a for a, b in zip(res.costs, res.costs[1:]))  # cost decreases every step


@pytest.mark.parametrize("beta, stop_at", [(1, 3), (3, 4)])
def test_beta_rule_and_argmin(beta, stop_at):
    # costs: x_0 = 0 -> 0.5, then 0.4, 0.3, 0.35, 0.45, 0.55 (x chosen to give them)
    costs = [0.4, 0.3, 0.35, 0.45, 0.55, 0.6]
    points = [math.log((1 - c) / c) for c in costs]
    res = mi_face(OneFeatureLogit(), 1, alpha=6, beta=beta, gamma=0.0, lam=1.0, process=scripted_process(points))
    # beta=1: c_3=0.35 >= c_2=0.3 stops at i=3; beta=3: c_3 < max(0.5,0.4,0.3) goes on,
    # c_4=0.45 >= max(0.4,0.3,0.35) stops at i=4
    assert res.stop == "beta" and res.n_steps == stop_at
    assert res.best_step == 2 and res.cost == pytest.approx(0.3, abs=1e-6)
    assert float(res.x[0]) == pytest.approx(points[1], abs=1e-6)


@pytest.mark.parametrize("beta", [1, 3])
def test_a_plateau_triggers_the_beta_rule(beta):
    # PROCESS clips x_1 to 0.3, so x_1 = x_2 = ... = (0.3, 0) and every cost after c(x_0) = 0.5 is
    # the same: the rule fires once c(x_0) has left the window of the last beta costs, at i = beta + 1
    res = mi_face(OneFeatureLogit(), 1, alpha=50, beta=beta, gamma=0.0, lam=10.0, process=clip_to_range(-1.0, 0.3))
    assert res.stop == "beta" and res.n_steps == beta + 1
    assert res.costs[1:] == pytest.approx([cost_at(0.3)] * (beta + 1), abs=1e-6)
    assert len(set(res.costs[1:])) == 1
    assert res.best_step == 1  # the first of equal minima


def test_auxterm_enters_the_cost_and_wrong_label_is_costly():
    shift = lambda x: torch.tensor(0.25)  # noqa: E731 - a constant AUXTERM
    res = mi_face(OneFeatureLogit(), 1, alpha=3, beta=5, gamma=0.0, lam=1.0, auxterm=shift)
    plain = mi_face(OneFeatureLogit(), 1, alpha=3, beta=5, gamma=0.0, lam=1.0)
    assert [a - b for a, b in zip(res.costs, plain.costs)] == pytest.approx([0.25] * 4)
    # inverting class 0 moves x_1 down, inverting class 1 moves it up
    assert float(mi_face(OneFeatureLogit(), 0, alpha=5, lam=1.0).x[0]) < 0 < float(plain.x[0])


def test_a_probability_callable_works_like_the_module():
    m = OneFeatureLogit()
    a = mi_face(m, 1, alpha=5, lam=1.0)
    b = mi_face(softmax_probabilities(m), 1, alpha=5, lam=1.0, input_shape=(2,))
    assert a.costs == pytest.approx(b.costs)


@pytest.mark.parametrize(
    "kwargs",
    [dict(label=2), dict(label=-1), dict(alpha=0), dict(beta=0), dict(lam=0.0), dict(lam=-1.0)],
)
def test_bad_arguments_raise(kwargs):
    args = dict(label=1, alpha=5, beta=2, lam=0.1) | kwargs
    with pytest.raises(ValueError):
        mi_face(OneFeatureLogit(), args.pop("label"), **args)


def test_input_shape_is_required_for_a_bare_callable():
    with pytest.raises(ValueError, match="input_shape"):
        mi_face(lambda x: torch.softmax(x, 1), 0)


def test_processes():
    x = torch.tensor([[-0.5, 0.2, 1.7, 0.9]])
    assert torch.equal(clip_to_range()(x), torch.tensor([[0.0, 0.2, 1.0, 0.9]]))
    const = torch.full((1, 64), 0.3)
    assert torch.allclose(gaussian_smoothing(0.8)(const), const)  # a flat image stays flat
    noise = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    smooth = gaussian_smoothing(0.8)(noise)
    assert smooth.shape == noise.shape
    assert smooth.var() < 0.5 * noise.var()
    assert smooth.mean() == pytest.approx(float(noise.mean()), abs=0.05)
    both = compose(gaussian_smoothing(0.8, low=None, high=None), clip_to_range(0.0, 0.5))
    assert float(both(noise).max()) <= 0.5
    img = torch.zeros(1, 64)
    img[0, ::2] = 1.0  # stripes: high total variation
    assert float(total_variation(1.0)(img)) > float(total_variation(1.0)(torch.full((1, 64), 0.5)))
    assert float(l2_penalty(2.0)(torch.ones(1, 4))) == pytest.approx(2.0)


def test_class_means_and_reconstruction_score_on_known_points():
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0], [12.0, 10.0]])
    y = torch.tensor([0, 0, 1, 1])
    means = class_means(x, y)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [11.0, 10.0]]))
    f = lambda z: torch.softmax(torch.stack([-z[:, 0], z[:, 0] - 6.0], 1), 1)  # noqa: E731
    score = reconstruction_score(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 1]), f_target=f, means=means)
    assert score.nearer_own.tolist() == [True, False]
    assert score.n_nearer_own == 1
    assert score.own_distance[0] == pytest.approx(0.0)
    assert score.other_distance[1] == pytest.approx(1.0)  # (1, 1) is at distance 1 from class 0's mean
    assert score.confidence[0] == pytest.approx(float(torch.sigmoid(torch.tensor(4.0))), abs=1e-6)  # logits (-1, -5)
    with pytest.raises(ValueError):
        class_means(x, torch.tensor([0, 0, 2, 2]), n_classes=3)  # class 1 is empty


def test_inversions_of_a_trained_digit_model_are_their_class():
    data = load_digits()
    splits = make_splits(data, target_train=300, target_test=0, seed=0, stratify=True)
    train = splits.target_train
    model = MLP(64, 10, hidden=(128,), seed=0)
    fit(model, train.x, train.y, epochs=60, lr=3e-3, weight_decay=1e-2, seed=0)
    results = invert_classes(model, alpha=2000, beta=50, gamma=0.01, lam=1.0, process=clip_to_range())
    assert all(isinstance(r, InversionResult) for r in results)
    x_inv = torch.stack([r.x for r in results])  # (10, 64)
    assert float(x_inv.min()) >= 0.0 and float(x_inv.max()) <= 1.0
    probs = predict_proba(model, x_inv)
    assert probs.argmax(1).tolist() == list(range(10))
    assert float(probs.diagonal().min()) >= 0.9
    score = reconstruction_score(x_inv, torch.arange(10), f_target=model, means=class_means(train.x, train.y, n_classes=10))
    assert score.n_nearer_own >= 8
    # the zero image is not such a reconstruction: it is nearer the dimmest mean for every class
    zero = reconstruction_score(torch.zeros(10, 64), torch.arange(10), f_target=model, means=class_means(train.x, train.y, n_classes=10))
    assert zero.n_nearer_own <= 1


def test_olivetti_faces_never_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="never"):
        load_olivetti_faces(data_home=str(tmp_path))
    assert list(tmp_path.rglob("*.pkz")) == []
