"""Shadow training data: SYNTHESIZE (Shokri et al. 2017, Algorithm 1), batched chains, marginals, noise."""
import math

import pytest
import torch
from handset import Linear, gen
from torch import nn

from labkit.data import Data, make_purchase
from labkit.membership import (
    marginal_synthesis,
    noisy_data,
    rand_record,
    synthesize,
    synthesize_batch,
)
from labkit.oracle import Oracle


def linear_oracle(weight: torch.Tensor, bias: torch.Tensor) -> Oracle:
    """An oracle around a softmax regression with hand-set weights."""
    return Oracle(Linear(weight, bias))


def three_feature_oracle(d: int = 12) -> Oracle:
    """Class 1 is confident (p > 0.95) only when features 0, 1 and 2 are all 1; class 0 otherwise."""
    w = torch.zeros(3, d)
    w[1, :3] = 4.0  # logit_1 = 4 * (x0 + x1 + x2) - 9
    b = torch.tensor([0.0, -9.0, -3.0])
    return linear_oracle(w, b)


class Recorder(nn.Module):
    """Wraps a model and keeps every input it is asked about (to inspect the chain's queries)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.input_shape, self.n_classes = model.input_shape, model.n_classes
        self.seen: list[torch.Tensor] = []
        self.answers: list[torch.Tensor] = []

    def forward(self, x):
        out = self.model(x)
        self.seen.append(x.detach().clone())
        self.answers.append(torch.softmax(out.detach().double(), dim=1).float())  # as the oracle computes it
        return out


# ----------------------------------------------------------------------------- RANDRECORD
def test_rand_record_changes_at_most_k_features_and_is_deterministic():
    x_star = rand_record(50, seed=gen(0))
    assert set(x_star.unique().tolist()) <= {0.0, 1.0}
    diffs = [int((rand_record(50, x_star=x_star, k=6, seed=gen(s)) != x_star).sum()) for s in range(200)]
    assert max(diffs) <= 6
    # a re-drawn feature changes with probability 1/2: on average k/2 = 3 changes
    assert abs(sum(diffs) / len(diffs) - 3.0) < 0.4
    assert torch.equal(rand_record(50, x_star=x_star, k=6, seed=gen(7)), rand_record(50, x_star=x_star, k=6, seed=gen(7)))
    # p_one sets the density of a fresh record
    dense = rand_record(20_000, p_one=0.2, seed=gen(1))
    assert abs(float(dense.mean()) - 0.2) < 0.01


def test_rand_record_rejects_bad_arguments():
    with pytest.raises(ValueError, match="k"):
        rand_record(10, x_star=torch.zeros(10), k=11)
    with pytest.raises(ValueError, match="shape"):
        rand_record(10, x_star=torch.zeros(9), k=2)
    with pytest.raises(ValueError, match="p_one"):
        rand_record(10, p_one=1.5)


# ----------------------------------------------------------------------------- SYNTHESIZE
def test_synthesize_returns_bottom_when_conf_min_is_unreachable_after_exactly_iter_max_queries():
    # Constant logits: every record gets (1/3, 1/3, 1/3), so y_c never exceeds conf_min = 0.5.
    oracle = linear_oracle(torch.zeros(3, 10), torch.zeros(3))
    out = synthesize(oracle, 0, k_max=5, k_min=1, conf_min=0.5, rej_max=3, iter_max=37, seed=gen(0))
    assert out is None
    assert oracle.queries == 37
    # reachable confidence but the wrong arg-max (class 1 always wins) is also a failure
    oracle = linear_oracle(torch.zeros(3, 10), torch.tensor([0.0, 3.0, 0.0]))
    assert synthesize(oracle, 0, k_max=5, conf_min=0.0, rej_max=3, iter_max=25, seed=gen(0)) is None
    assert oracle.queries == 25


def test_synthesize_finds_a_confident_record_of_class_c():
    oracle = three_feature_oracle()
    for seed in range(5):
        oracle.reset()
        x = synthesize(oracle, 1, k_max=6, k_min=1, conf_min=0.9, rej_max=5, iter_max=500, seed=gen(seed))
        assert x is not None and x.shape == (12,)
        assert set(x.unique().tolist()) <= {0.0, 1.0}
        # the only way to be class 1 with confidence > 0.9 here: features 0, 1, 2 are on
        assert torch.equal(x[:3], torch.ones(3))
        probs = oracle(x[None])[0]
        assert int(probs.argmax()) == 1 and probs[1] > 0.9
        assert 1 <= oracle.queries - 1 <= 500


def test_synthesize_is_determined_by_its_generator():
    oracle = three_feature_oracle()
    runs = []
    for seed in (3, 3, 4):
        oracle.reset()
        runs.append((synthesize(oracle, 1, k_max=6, conf_min=0.9, rej_max=5, iter_max=500, seed=gen(seed)), oracle.queries))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert not (torch.equal(runs[0][0], runs[2][0]) and runs[0][1] == runs[2][1])


def _replay_k(outputs: torch.Tensor, c: int, *, k_max: int, k_min: int, rej_max: int) -> list[int]:
    """k used to build each query after the first, from the answers the chain received."""
    y_star, j, k, ks = 0.0, 0, k_max, []
    for y in outputs[:-1]:
        if float(y[c]) >= y_star:
            y_star, j = float(y[c]), 0
        else:
            j += 1
            if j > rej_max:
                k, j = max(k_min, math.ceil(k / 2)), 0
        ks.append(k)
    return ks


def test_synthesize_halves_k_after_rej_max_consecutive_rejects():
    d, k_max, k_min, rej_max = 64, 64, 2, 2
    w = torch.randn(2, d, generator=gen(0)) * 0.5
    model = Recorder(Linear(w, torch.zeros(2)))
    oracle = Oracle(model)
    # conf_min = 1 cannot be exceeded: the chain runs all iter_max iterations
    assert synthesize(oracle, 1, k_max=k_max, k_min=k_min, conf_min=1.0, rej_max=rej_max, iter_max=400, seed=gen(1)) is None
    queries = torch.cat(model.seen)  # (400, d), one per iteration
    assert queries.shape == (400, d)
    outputs = torch.cat(model.answers)  # (400, 2), the answers the chain saw
    ks = _replay_k(outputs, 1, k_max=k_max, k_min=k_min, rej_max=rej_max)
    # rebuild x* (the last accepted record) along the chain and measure each step's change
    x_star, y_star, dist = queries[0], float(outputs[0, 1]), []
    for t in range(1, len(queries)):
        dist.append(int((queries[t] != x_star).sum()))
        if float(outputs[t, 1]) >= y_star:
            x_star, y_star = queries[t], float(outputs[t, 1])
    dist, ks = torch.tensor(dist), torch.tensor(ks)
    assert bool((dist <= ks).all()), "a query changed more than k features of x*"
    assert ks[-1] == k_min, "the climb should have shrunk k to k_min"
    # at each k level that lasted, about half of the k re-drawn features changed (not fewer: k was not halved early)
    for level in ks.unique().tolist():
        at = ks == level
        if level >= 8 and int(at.sum()) >= 5:
            assert float(dist[at].float().mean()) > 0.3 * level, f"k = {level}: changes look like a smaller k"


# ----------------------------------------------------------------------------- batched chains
@pytest.mark.parametrize("seed", range(4))
def test_one_batched_chain_equals_the_sequential_chain(seed):
    oracle = three_feature_oracle()
    x = synthesize(oracle, 1, k_max=6, k_min=1, conf_min=0.9, rej_max=3, iter_max=60, seed=gen(seed))
    q_seq = oracle.queries
    oracle.reset()
    res = synthesize_batch(oracle, torch.tensor([1]), k_max=6, k_min=1, conf_min=0.9, rej_max=3, iter_max=60, seed=gen(seed))
    assert int(res.queries[0]) == q_seq == oracle.queries
    assert bool(res.success[0]) == (x is not None)
    if x is not None:
        assert torch.equal(res.x[0], x)


def test_one_batched_chain_asks_the_same_queries_as_the_sequential_chain():
    """A long failing climb (conf_min = 1): every query, hence every accept, reject and halving, agrees."""
    w = torch.randn(2, 48, generator=gen(4)) * 0.5
    streams = []
    for batched in (False, True):
        model = Recorder(Linear(w, torch.zeros(2)))
        kw = dict(k_max=48, k_min=1, conf_min=1.0, rej_max=2, iter_max=300, seed=gen(11))
        if batched:
            assert not bool(synthesize_batch(Oracle(model), torch.tensor([0]), **kw).success[0])
        else:
            assert synthesize(Oracle(model), 0, **kw) is None
        streams.append(torch.cat(model.seen))
    assert streams[0].shape == (300, 48)
    assert torch.equal(streams[0], streams[1])


def test_batched_chains_follow_the_algorithm():
    w = torch.randn(4, 40, generator=gen(2))
    oracle = linear_oracle(w, torch.zeros(4))
    classes = torch.arange(200) % 4
    res = synthesize_batch(oracle, classes, k_max=16, k_min=2, conf_min=0.8, rej_max=5, iter_max=150, seed=gen(3))
    assert oracle.queries == int(res.queries.sum())  # every query is counted once
    assert int(res.queries.max()) <= 150
    assert res.oracle_calls == int(res.queries.max())  # one oracle call per iteration
    assert 0 < res.n_records < 200 or res.n_records == 200
    probs = oracle(res.x[res.success])
    assert torch.equal(probs.argmax(1), classes[res.success])
    assert bool((probs.gather(1, classes[res.success][:, None]) > 0.8).all())
    assert bool((res.x[~res.success] == 0).all())
    assert res.queries_per_record == pytest.approx(float(res.queries.sum()) / res.n_records)
    data = res.data(4)
    assert len(data) == res.n_records and torch.equal(data.y, classes[res.success])


def test_batched_chains_match_sequential_chains_in_distribution():
    """Many chains run side by side need as many queries, and succeed as often, as chains run one at a time."""
    w = torch.randn(3, 30, generator=gen(5)) * 0.7
    oracle = linear_oracle(w, torch.zeros(3))
    kw = dict(k_max=10, k_min=1, conf_min=0.7, rej_max=4, iter_max=80)
    seq_q, seq_ok = [], []
    for s in range(150):
        oracle.reset()
        x = synthesize(oracle, s % 3, seed=gen(1000 + s), **kw)
        seq_q.append(oracle.queries)
        seq_ok.append(x is not None)
    res = synthesize_batch(oracle, torch.arange(600) % 3, seed=gen(9), **kw)
    q_seq, q_bat = torch.tensor(seq_q, dtype=torch.float64), res.queries.double()
    se = math.sqrt(q_seq.var() / len(q_seq) + q_bat.var() / len(q_bat))
    assert abs(float(q_seq.mean() - q_bat.mean())) < 4 * se
    p_seq, p_bat = sum(seq_ok) / 150, res.n_records / 600
    assert abs(p_seq - p_bat) < 4 * math.sqrt(p_seq * (1 - p_seq) / 150 + 1e-4)


def test_synthesis_needs_probability_vectors_and_valid_parameters():
    oracle = three_feature_oracle()
    label_oracle = Oracle(Linear(torch.zeros(3, 12), torch.zeros(3)), output="label")
    with pytest.raises(ValueError, match="probability"):
        synthesize(label_oracle, 1, k_max=4, conf_min=0.5, rej_max=2, iter_max=10)
    with pytest.raises(ValueError, match="k_max"):
        synthesize(oracle, 1, k_max=13, conf_min=0.5, rej_max=2, iter_max=10)
    with pytest.raises(ValueError, match="k_max"):
        synthesize(oracle, 1, k_max=2, k_min=3, conf_min=0.5, rej_max=2, iter_max=10)
    with pytest.raises(ValueError, match="conf_min"):
        synthesize(oracle, 1, k_max=4, conf_min=1.5, rej_max=2, iter_max=10)
    with pytest.raises(ValueError, match="class"):
        synthesize(oracle, 3, k_max=4, conf_min=0.5, rej_max=2, iter_max=10)
    with pytest.raises(ValueError, match="classes"):
        synthesize_batch(oracle, torch.tensor([0, 5]), k_max=4, conf_min=0.5, rej_max=2, iter_max=10)


# ----------------------------------------------------------------------------- marginals and noise
def test_marginal_synthesis_keeps_per_class_marginals_and_breaks_correlations():
    data = make_purchase(3000, n_features=40, n_classes=4, strength=1.5, seed=1)
    x = data.x.clone()
    x[:, 1] = x[:, 0]  # two perfectly correlated features
    data = Data(x, data.y, 4)
    synth = marginal_synthesis(data, 40_000, seed=gen(0))
    assert synth.x.shape == (40_000, 40) and synth.n_classes == 4
    # label proportions follow the data
    p_real = torch.bincount(data.y, minlength=4).double() / len(data)
    p_syn = torch.bincount(synth.y, minlength=4).double() / len(synth)
    assert torch.allclose(p_real, p_syn, atol=0.015)
    for c in range(4):
        m_real = data.x[data.y == c].mean(0)
        m_syn = synth.x[synth.y == c].mean(0)
        assert torch.allclose(m_real, m_syn, atol=0.03), f"class {c}: feature frequencies moved"
    # x1 == x0 in every real record, but only by chance in the synthetic ones
    agree = float((synth.x[:, 0] == synth.x[:, 1]).float().mean())
    p_c = torch.stack([data.x[data.y == c, 0].mean() for c in range(4)])  # per-class frequency of x0
    expected = float((p_real * (p_c**2 + (1 - p_c) ** 2)).sum())  # independent draws within a class
    assert agree < 0.95 and agree == pytest.approx(expected, abs=0.02)
    assert torch.equal(marginal_synthesis(data, 50, seed=gen(4)).x, marginal_synthesis(data, 50, seed=gen(4)).x)


def test_noisy_data_flips_the_requested_fraction_of_features():
    data = make_purchase(500, n_features=600, n_classes=5, seed=2)
    for fraction, n_flip in ((0.1, 60), (0.2, 120)):
        noisy = noisy_data(data, fraction=fraction, seed=gen(0))
        changed = (noisy.x != data.x).sum(1)
        assert bool((changed == n_flip).all())
        assert torch.equal(noisy.y, data.y)
        # every feature is equally likely to be flipped
        per_feature = (noisy.x != data.x).float().mean(0)
        assert abs(float(per_feature.mean()) - fraction) < 1e-6 and float(per_feature.std()) < 0.05
    assert torch.equal(noisy_data(data, fraction=0.0, seed=gen(0)).x, data.x)
    with pytest.raises(ValueError, match="binary"):
        noisy_data(Data(torch.rand(5, 4), torch.zeros(5, dtype=torch.long), 2), fraction=0.1)
    with pytest.raises(ValueError, match="fraction"):
        noisy_data(data, fraction=1.5)
