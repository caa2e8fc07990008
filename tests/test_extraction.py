"""labkit.extraction: equation solving recovers logistic regression; surrogates steal a model."""
import math

import pytest
import torch

from labkit import extraction as ex
from labkit.data import load_digits, make_splits
from labkit.metrics import fidelity
from labkit.models import MLP, LogisticRegression
from labkit.oracle import Oracle, QueryBudgetExceeded
from labkit.train import fit, predict, predict_proba, soft_targets
from labkit.utils import make_generator


def _logreg(d: int, c: int, seed: int, scale: float = 1.0) -> LogisticRegression:
    """A logistic regression with random weights of a known size (the victim)."""
    gen = make_generator(seed)
    model = LogisticRegression(d, c)
    with torch.no_grad():
        model.linear.weight.copy_(scale * torch.randn(model.linear.weight.shape, generator=gen))
        model.linear.bias.copy_(torch.randn(model.linear.bias.shape, generator=gen))
    return model.eval()


def _normalised(model: LogisticRegression) -> tuple[torch.Tensor, torch.Tensor]:
    """The victim's parameters with class 0 as the zero reference (binary: its single row)."""
    w, b = model.linear.weight.detach().double(), model.linear.bias.detach().double()
    if model.binary:
        return w, b
    return w - w[:1], b - b[:1]


# ---------------------------------------------------------------- the linear algebra core
@pytest.mark.parametrize("c", [2, 5])
def test_core_recovers_exact_float64_parameters(c):
    # Second way to compute the same quantity: build float64 probabilities from known
    # parameters and check that solving gives them back to round-off.
    gen = make_generator(3)
    d = 7
    w = torch.randn(c, d, generator=gen, dtype=torch.float64)
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    x = torch.rand(d + 1, d, generator=gen, dtype=torch.float64)
    probs = torch.softmax(x @ w.T + b, dim=1)
    got = ex.solve_logreg_equations(x, probs)
    assert got.queries == d + 1 and got.n_classes == c
    if c == 2:
        assert got.weight.shape == (1, d) and got.bias.shape == (1,)
        want_w, want_b = (w[1] - w[0])[None], (b[1] - b[0])[None]
    else:
        assert got.weight.shape == (c, d) and got.bias.shape == (c,)
        assert torch.equal(got.weight[0], torch.zeros(d, dtype=torch.float64)) and got.bias[0] == 0
        want_w, want_b = w - w[:1], b - b[:1]
    assert torch.allclose(got.weight, want_w, atol=1e-9, rtol=0)
    assert torch.allclose(got.bias, want_b, atol=1e-9, rtol=0)
    # the shift is all that is lost: the recovered model gives the same probabilities
    assert torch.allclose(got.predict_proba(x), probs, atol=1e-12)


def test_core_fails_with_one_point_too_few():
    x = torch.rand(4, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least d \\+ 1 = 5"):
        ex.solve_logreg_equations(x, torch.full((4, 3), 1 / 3, dtype=torch.float64))


def test_core_rejects_bad_shapes_and_values():
    x = torch.rand(6, 3)
    p = torch.softmax(torch.randn(6, 3), dim=1)
    with pytest.raises(ValueError, match="one row per query point"):
        ex.solve_logreg_equations(x, p[:5])
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        ex.solve_logreg_equations(torch.rand(6, 3, 1), p)
    with pytest.raises(ValueError, match="label-only"):
        ex.solve_logreg_equations(x, p.argmax(1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        ex.solve_logreg_equations(x, torch.ones(6, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ex.solve_logreg_equations(x, p * 3)
    zeroed = p.clone()
    zeroed[0, 0] = 0.0
    with pytest.raises(ValueError, match="min_prob"):
        ex.solve_logreg_equations(x, zeroed)
    assert torch.isfinite(ex.solve_logreg_equations(x, zeroed, min_prob=1e-3).weight).all()
    duplicate = torch.cat([x[:1]] * 6)  # six copies of one point: rank 1
    with pytest.raises(ValueError, match="rank 1"):
        ex.solve_logreg_equations(duplicate, p)


# ---------------------------------------------------------------- the attack through an oracle
@pytest.mark.parametrize("d,c", [(6, 2), (9, 4), (64, 10)])
def test_solve_logreg_recovers_parameters_with_d_plus_1_queries(d, c):
    victim = _logreg(d, c, seed=d, scale=0.5)
    oracle = Oracle(victim)
    got = ex.solve_logreg(oracle, seed=make_generator(1))
    assert got.queries == d + 1 and oracle.queries == d + 1  # exactly the minimum
    want_w, want_b = _normalised(victim)
    # the oracle answers in float32: recovery is limited by its rounding, not by the method
    assert (got.weight - want_w).abs().max() < 1e-5
    assert (got.bias - want_b).abs().max() < 1e-5
    # functional equivalence on fresh inputs, inside and around the query box
    fresh = torch.rand(2000, d, generator=make_generator(2)) * 1.5 - 0.25
    p_victim = predict_proba(victim, fresh).double()
    assert (got.predict_proba(fresh) - p_victim).abs().max() < 1e-6
    assert torch.equal(got.predict_proba(fresh).argmax(1), p_victim.argmax(1))
    assert torch.equal(predict(got.model(), fresh), predict(victim, fresh))


def test_binary_extraction_is_the_sigmoid_weight_vector():
    victim = _logreg(5, 2, seed=0)
    got = ex.solve_logreg(Oracle(victim), seed=make_generator(0))
    assert got.binary and got.weight.shape == (1, 5)
    assert torch.allclose(got.weight.float(), victim.linear.weight.detach(), atol=1e-5)
    model = got.model()
    assert model.binary and torch.allclose(model.linear.bias, victim.linear.bias.detach(), atol=1e-5)


def test_uniform_design_also_recovers_a_small_model():
    victim = _logreg(4, 3, seed=5)
    got = ex.solve_logreg(Oracle(victim), design="uniform", seed=make_generator(0))
    want_w, _ = _normalised(victim)
    assert (got.weight - want_w).abs().max() < 1e-4


def test_temperature_is_recovered_as_the_served_function():
    victim = _logreg(6, 3, seed=4)
    got = ex.solve_logreg(Oracle(victim, temperature=2.0), seed=make_generator(0))
    want_w, want_b = _normalised(victim)
    assert torch.allclose(got.weight, want_w / 2, atol=1e-5)
    assert torch.allclose(got.bias, want_b / 2, atol=1e-5)


def test_query_points_are_deterministic_in_range_and_orthogonal():
    a = ex.logreg_queries(9, (8,), low=-1.0, high=2.0, seed=make_generator(7))
    b = ex.logreg_queries(9, (8,), low=-1.0, high=2.0, seed=make_generator(7))
    c = ex.logreg_queries(9, (8,), low=-1.0, high=2.0, seed=make_generator(8))
    assert a.shape == (9, 8) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -1.0 - 1e-6 and a.max() <= 2.0 + 1e-6
    diff = (a[1:] - a[0]).double()  # (d, d): orthogonal rows of equal length
    gram = diff @ diff.T
    assert torch.allclose(gram, gram[0, 0] * torch.eye(8, dtype=torch.float64), atol=1e-5)
    more = ex.logreg_queries(20, (1, 2, 2), seed=make_generator(0))
    assert more.shape == (20, 1, 2, 2) and more.min() >= 0 and more.max() <= 1


def test_same_seed_same_extraction():
    victim = _logreg(6, 3, seed=1)
    a = ex.solve_logreg(Oracle(victim), seed=make_generator(11))
    b = ex.solve_logreg(Oracle(victim), seed=make_generator(11))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_n_queries_and_budget_are_respected():
    victim = _logreg(6, 3, seed=2)
    oracle = Oracle(victim)
    got = ex.solve_logreg(oracle, n_queries=30, seed=make_generator(0))
    assert got.queries == 30 and oracle.queries == 30
    with pytest.raises(ValueError, match="d \\+ 1 = 7"):
        ex.solve_logreg(Oracle(victim), n_queries=6)
    capped = Oracle(victim, budget=6)
    with pytest.raises(QueryBudgetExceeded):
        ex.solve_logreg(capped, seed=make_generator(0))


def test_label_only_oracle_is_refused_before_spending_queries():
    oracle = Oracle(_logreg(6, 3, seed=3), output="label")
    with pytest.raises(ValueError, match="labels only"):
        ex.solve_logreg(oracle, seed=make_generator(0))
    assert oracle.queries == 0


def _extraction_error(victim, oracle, n_queries, seed, fresh):
    got = ex.solve_logreg(oracle, n_queries=n_queries, seed=make_generator(seed))
    return float((got.predict_proba(fresh) - predict_proba(victim, fresh).double()).abs().max())


def test_rounding_degrades_and_more_queries_help():
    d, c = 10, 4
    victim = _logreg(d, c, seed=6, scale=0.7)
    fresh = torch.rand(1000, d, generator=make_generator(9))
    exact = _extraction_error(victim, Oracle(victim), d + 1, 0, fresh)
    rounded = [_extraction_error(victim, Oracle(victim, decimals=2), d + 1, s, fresh) for s in range(3)]
    many = [_extraction_error(victim, Oracle(victim, decimals=2), 50 * (d + 1), s, fresh) for s in range(3)]
    assert exact < 1e-6
    assert min(rounded) > 1e-3  # two decimals: no longer functionally equivalent
    assert max(many) < min(rounded) / 2  # least squares over more equations averages rounding out


def test_rounding_to_zero_is_handled_by_clamping():
    victim = _logreg(5, 3, seed=7, scale=6.0)  # confident: rounding returns zeros
    oracle = Oracle(victim, decimals=2)
    x = ex.logreg_queries(6, (5,), seed=make_generator(0))
    assert (oracle(x) == 0).any()
    got = ex.solve_logreg(Oracle(victim, decimals=2), seed=make_generator(0))
    assert torch.isfinite(got.weight).all() and torch.isfinite(got.bias).all()


# ---------------------------------------------------------------- fidelity vs accuracy
def test_extraction_scores_by_hand():
    x = torch.zeros(4, 2)
    y = torch.tensor([0, 1, 1, 0])
    f_oracle = lambda x: torch.tensor([0, 1, 0, 0])  # noqa: E731 - one mistake
    f_hat = lambda x: torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])  # noqa: E731
    s = ex.extraction_scores(f_hat, f_oracle, x, y)
    assert s.accuracy == pytest.approx(3 / 4) and s.fidelity == pytest.approx(2 / 4)
    with pytest.raises(ValueError, match="4 labels"):
        ex.extraction_scores(f_hat, f_oracle, x, y[:3])
    with pytest.raises(ValueError, match="callable"):
        ex.extraction_scores("model", f_oracle, x, y)


def test_fidelity_toy_reproduces_figure_1():
    toy = ex.make_fidelity_toy(40, n_mistakes=4, seed=0)
    assert toy.x.shape == (40, 2) and toy.x.abs().max() <= 1
    oracle = ex.extraction_scores(toy.oracle, toy.oracle, toy.x, toy.y)
    hi_fid = ex.extraction_scores(toy.high_fidelity, toy.oracle, toy.x, toy.y)
    hi_acc = ex.extraction_scores(toy.high_accuracy, toy.oracle, toy.x, toy.y)
    assert oracle.accuracy == pytest.approx(0.9) and oracle.fidelity == 1.0
    assert hi_fid.fidelity == 1.0 and hi_fid.accuracy == pytest.approx(0.9)
    assert hi_acc.accuracy == 1.0 and hi_acc.fidelity == pytest.approx(0.9)
    # high fidelity on the data is not functional equivalence: the lines differ in the plane
    grid = torch.rand(5000, 2, generator=make_generator(1)) * 2 - 1
    assert fidelity(predict(toy.high_fidelity, grid), predict(toy.oracle, grid)) < 0.95
    again = ex.make_fidelity_toy(40, n_mistakes=4, seed=0)
    assert torch.equal(again.x, toy.x)
    with pytest.raises(ValueError, match="n_mistakes"):
        ex.make_fidelity_toy(5, n_mistakes=6)


# ---------------------------------------------------------------- learning-based surrogates
@pytest.fixture(scope="module")
def digits_setting():
    splits = make_splits(load_digits(), target_train=500, target_test=300, attacker=600, seed=0, stratify=True)
    victim = _fresh_logreg(0)
    fit(victim, splits.target_train.x, splits.target_train.y, epochs=10, batch_size=128, lr=2e-2, seed=0)
    return splits, victim


def _fresh_logreg(seed: int = 0) -> LogisticRegression:
    return LogisticRegression(64, 10, seed=seed)


@pytest.fixture(scope="module")
def stolen(digits_setting):
    """Surrogates stolen with 300 queries from a probability API and from a label-only API."""
    splits, victim = digits_setting
    out = {}
    for kind in ("probs", "label"):
        oracle = Oracle(victim, output=kind)
        res = ex.train_surrogate(oracle, splits.attacker.x, _fresh_logreg(), n_queries=300, epochs=20, batch_size=100, lr=3e-2, seed=0)
        out[kind] = (oracle, res)
    return out


def test_surrogate_steals_a_digits_model(digits_setting, stolen):
    splits, victim = digits_setting
    oracle, res = stolen["probs"]
    assert res.queries == 300 and oracle.queries == 300
    assert res.answers.shape == (300, 10) and res.answers.is_floating_point()
    # the queried points come from the pool, and the answers are the oracle's on them
    pool_rows = {tuple(r.tolist()) for r in splits.attacker.x}
    assert all(tuple(r.tolist()) in pool_rows for r in res.x_queried)
    assert len({tuple(r.tolist()) for r in res.x_queried}) == 300
    assert torch.allclose(res.answers, Oracle(victim)(res.x_queried))
    test_x = splits.target_test.x
    fid = fidelity(predict(res.model, test_x), predict(victim, test_x))
    untrained = fidelity(predict(_fresh_logreg(), test_x), predict(victim, test_x))
    assert fid > 0.93 and untrained < 0.3


def test_label_only_surrogate_trains_on_hard_labels(digits_setting, stolen):
    splits, victim = digits_setting
    oracle, res = stolen["label"]
    assert oracle.queries == 300 and res.answers.dtype == torch.int64 and res.answers.shape == (300,)
    test_x = splits.target_test.x
    assert fidelity(predict(res.model, test_x), predict(victim, test_x)) > 0.85


def test_soft_answers_transfer_the_probabilities_not_only_the_labels(digits_setting, stolen):
    splits, victim = digits_setting
    test_x = splits.target_test.x
    p_victim = predict_proba(victim, test_x)
    gap = {kind: float((predict_proba(res.model, test_x) - p_victim).abs().sum(1).mean()) for kind, (_, res) in stolen.items()}
    # total-variation-like distance to the victim's probability vectors: soft targets copy them
    assert gap["probs"] < 0.3 * gap["label"], gap


def test_surrogate_is_deterministic_and_budgets_are_nested(digits_setting):
    splits, victim = digits_setting
    a = ex.train_surrogate(Oracle(victim), splits.attacker.x, _fresh_logreg(), n_queries=50, epochs=3, seed=4)
    b = ex.train_surrogate(Oracle(victim), splits.attacker.x, _fresh_logreg(), n_queries=50, epochs=3, seed=4)
    assert torch.equal(a.x_queried, b.x_queried)
    assert torch.equal(a.model.linear.weight, b.model.linear.weight)
    bigger = ex.train_surrogate(Oracle(victim), splits.attacker.x, _fresh_logreg(), n_queries=80, epochs=1, seed=4)
    assert torch.equal(bigger.x_queried[:50], a.x_queried)
    other = ex.train_surrogate(Oracle(victim), splits.attacker.x, _fresh_logreg(), n_queries=50, epochs=1, seed=5)
    assert not torch.equal(other.x_queried, a.x_queried)


def test_surrogate_rejects_bad_arguments(digits_setting):
    splits, victim = digits_setting
    pool = splits.attacker.x
    with pytest.raises(ValueError, match=r"\[1, 600\]"):
        ex.train_surrogate(Oracle(victim), pool, _fresh_logreg(), n_queries=601)
    with pytest.raises(ValueError, match=r"shape \(N, 64\)"):
        ex.train_surrogate(Oracle(victim), pool.reshape(-1, 1, 8, 8), _fresh_logreg())
    with pytest.raises(ValueError, match="10 classes"):
        ex.train_surrogate(Oracle(victim), pool, LogisticRegression(64, 3))
    with pytest.raises(ValueError, match="Oracle"):
        ex.train_surrogate(victim, pool, _fresh_logreg())


def test_soft_targets_are_renormalised():
    t = soft_targets(torch.tensor([[0.5, 0.3, 0.0], [0.0, 0.0, 0.0]]))
    assert torch.allclose(t, torch.tensor([[0.625, 0.375, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_budget_sweep_rows_and_more_queries_help(digits_setting):
    splits, victim = digits_setting
    rows = ex.budget_sweep(
        victim, splits.attacker.x, lambda: LogisticRegression(64, 10), splits.target_test.x, splits.target_test.y,
        budgets=[15, 300], outputs=("probs", "label"), epochs=15, batch_size=100, lr=1e-2, seed=0,
    )
    assert [(r["output"], r["budget"], r["queries"]) for r in rows] == [
        ("probs", 15, 15), ("probs", 300, 300), ("label", 15, 15), ("label", 300, 300)
    ]
    by = {(r["output"], r["budget"]): r for r in rows}
    for out in ("probs", "label"):
        assert by[(out, 300)]["fidelity"] > by[(out, 15)]["fidelity"] + 0.1
    assert all(0 <= r["accuracy"] <= 1 and 0 <= r["fidelity"] <= 1 for r in rows)
    with pytest.raises(ValueError, match="budgets"):
        ex.budget_sweep(victim, splits.attacker.x, _fresh_logreg, splits.target_test.x, splits.target_test.y, budgets=[0])
    with pytest.raises(ValueError, match="'probs', 'label'"):
        ex.budget_sweep(victim, splits.attacker.x, _fresh_logreg, splits.target_test.x, splits.target_test.y, budgets=[5], outputs=("logits",))


def test_mlp_surrogate_reaches_high_fidelity_at_500_probability_queries():
    splits = make_splits(load_digits(), target_train=600, target_test=400, attacker=797, seed=0, stratify=True)
    victim = MLP(64, 10, seed=0)
    fit(victim, splits.target_train.x, splits.target_train.y, epochs=40, seed=0)
    rows = ex.budget_sweep(victim, splits.attacker.x, lambda: MLP(64, 10), splits.target_test.x, splits.target_test.y,
                           budgets=[500], outputs=("probs", "label"), seed=0)
    by = {r["output"]: r for r in rows}
    assert by["probs"]["fidelity"] >= 0.93
    assert by["probs"]["fidelity"] >= by["label"]["fidelity"]
    assert math.isclose(by["probs"]["queries"], 500)


def test_equation_solving_refuses_a_top_k_oracle():
    oracle = Oracle(_logreg(5, 4, seed=0), top_k=2)
    with pytest.raises(ValueError, match="top 2 of 4"):
        ex.solve_logreg(oracle)
    assert oracle.queries == 0
