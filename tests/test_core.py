"""Unit tests of labkit's core: data, models, training, the oracle, metrics and grading helpers."""
import math

import pytest
import torch

from labkit import data, grading, metrics, models, oracle, train, utils


# ---------------------------------------------------------------- data
def test_digits_are_real_and_scaled():
    d = data.load_digits()
    assert d.x.shape == (1797, 64) and d.y.shape == (1797,)
    assert float(d.x.min()) == 0.0 and float(d.x.max()) == 1.0
    assert set(d.y.tolist()) == set(range(10))
    assert data.load_digits(image=True).x.shape == (1797, 1, 8, 8)


def test_purchase_is_deterministic_binary_and_extends_the_same_population():
    a = data.make_purchase(500, n_classes=10, seed=3)
    b = data.make_purchase(500, n_classes=10, seed=3)
    c = data.make_purchase(500, n_classes=10, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert set(torch.unique(a.x).tolist()) == {0.0, 1.0}
    assert a.x.shape == (500, 600) and int(a.y.max()) < 10
    # the population does not depend on n_samples: class-conditional means agree
    big = data.make_purchase(20000, n_classes=2, seed=1)
    big2 = data.make_purchase(10000, n_classes=2, seed=1)
    m1 = big.x[big.y == 0].mean(0)
    m2 = big2.x[big2.y == 0].mean(0)
    assert (m1 - m2).abs().mean() < 0.02


def test_purchase_classes_differ_more_with_strength():
    def between_class_gap(strength):
        d = data.make_purchase(4000, n_classes=2, strength=strength, seed=0)
        return float((d.x[d.y == 0].mean(0) - d.x[d.y == 1].mean(0)).abs().mean())

    assert between_class_gap(0.0) < 0.02 < between_class_gap(1.5)


def test_gamma_sampler_matches_moments():
    gen = utils.make_generator(0)
    for alpha in (0.6, 4.0):
        s = data._gamma_sample(alpha, (20000,), gen).double()
        assert abs(float(s.mean()) - alpha) < 0.05 * alpha + 0.02
        assert abs(float(s.var()) - alpha) < 0.1 * alpha + 0.02


def test_splits_are_disjoint_sized_and_deterministic():
    d = data.load_digits()
    d.x[:, 0] = torch.arange(len(d), dtype=torch.float32)  # tag each record with its index
    s = data.make_splits(d, target_train=500, target_test=0.2, attacker=300, shadow=400, seed=1)
    assert s.sizes() == {"target_train": 500, "target_test": 359, "attacker": 300, "shadow": 400}
    ids = [set(getattr(s, k).x[:, 0].long().tolist()) for k in ("target_train", "target_test", "attacker", "shadow")]
    assert sum(len(i) for i in ids) == len(set().union(*ids))
    s2 = data.make_splits(d, target_train=500, target_test=0.2, attacker=300, shadow=400, seed=1)
    assert torch.equal(s.attacker.x, s2.attacker.x)
    with pytest.raises(ValueError, match="only 1797"):
        data.make_splits(d, target_train=1000, target_test=1000)


def test_stratified_split_keeps_class_proportions():
    d = data.load_digits()
    s = data.make_splits(d, target_train=200, target_test=200, seed=0, stratify=True)
    counts = torch.bincount(s.target_train.y, minlength=10)
    assert int(counts.min()) >= 18 and int(counts.max()) <= 22


def test_torchvision_loader_names_the_embedded_alternative(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_digits"):
        data.load_torchvision("mnist", tmp_path)
    with pytest.raises(ValueError, match="must be one of"):
        data.load_torchvision("imagenet", tmp_path)


def test_data_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels in \[0, 2\]"):
        data.Data(torch.zeros(3, 2), torch.tensor([0, 1, 3]), 3)
    with pytest.raises(ValueError, match="one per input"):
        data.Data(torch.zeros(3, 2), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="integer class labels"):
        data.Data(torch.zeros(2, 2), torch.tensor([0.5, 1.0]), 3)


# ---------------------------------------------------------------- models and training
def test_binary_logistic_regression_is_a_sigmoid():
    m = models.LogisticRegression(3, 2)
    x = torch.randn(5, 3, generator=utils.make_generator(0))
    p = train.predict_proba(m, x)
    z = m.linear(x).squeeze(1)
    assert torch.allclose(p[:, 1], torch.sigmoid(z), atol=1e-6)
    assert m.linear.weight.shape == (1, 3)


def test_fit_is_deterministic_and_learns():
    d = data.load_digits()
    s = data.make_splits(d, target_train=600, target_test=300, seed=0)

    def run():
        m = models.MLP(64, 10, hidden=(32,), seed=0)
        train.fit(m, s.target_train.x, s.target_train.y, epochs=15, seed=7)
        return m

    a, b = run(), run()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert train.evaluate(a, s.target_test.x, s.target_test.y) > 0.85


def test_fit_accepts_soft_targets():
    d = data.load_digits()
    soft = torch.nn.functional.one_hot(d.y[:400], 10).float() * 0.9 + 0.01
    m = models.LogisticRegression(64, 10)
    r = train.fit(m, d.x[:400], soft, epochs=20, lr=1e-2, seed=0)
    assert r.train_accuracy > 0.9
    with pytest.raises(ValueError, match="soft targets must have shape"):
        train.fit(m, d.x[:400], soft[:, :5], epochs=1)


def test_cnn_shapes():
    m = models.SmallCNN((1, 28, 28), 10)
    assert m(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    assert models.SmallCNN((1, 8, 8), 10)(torch.zeros(4, 64)).shape == (4, 10)
    with pytest.raises(ValueError, match="n_classes"):
        models.MLP(4, 1)


def test_temperature_flattens_probabilities():
    m = models.LogisticRegression(4, 3)
    x = torch.randn(10, 4, generator=utils.make_generator(1))
    p1 = train.predict_proba(m, x)
    p5 = train.predict_proba(m, x, temperature=5.0)
    assert (metrics.normalized_entropy(p5) >= metrics.normalized_entropy(p1) - 1e-6).all()
    logits = m(x)
    assert torch.allclose(p5, torch.softmax(logits / 5.0, dim=1), atol=1e-6)


# ---------------------------------------------------------------- oracle
@pytest.fixture
def victim():
    return models.MLP(6, 4, hidden=(8,), seed=0)


def test_oracle_counts_queries_and_enforces_budget(victim):
    o = oracle.Oracle(victim, budget=10)
    o(torch.zeros(4, 6))
    o(torch.zeros(5, 6))
    assert o.queries == 9 and o.remaining == 1
    with pytest.raises(oracle.QueryBudgetExceeded, match="budget of 10"):
        o(torch.zeros(2, 6))
    assert o.queries == 9  # a refused query is not answered nor counted
    o(torch.zeros(1, 6))
    o.reset()
    assert o.queries == 0


def test_oracle_policies(victim):
    x = torch.randn(20, 6, generator=utils.make_generator(0))
    full = oracle.Oracle(victim)(x)
    assert torch.allclose(full.sum(1), torch.ones(20), atol=1e-6)
    top1 = oracle.Oracle(victim, top_k=1)(x)
    assert ((top1 > 0).sum(1) == 1).all() and torch.equal(top1.argmax(1), full.argmax(1))
    assert torch.allclose(top1.max(1).values, full.max(1).values)
    top3 = oracle.Oracle(victim, top_k=3)(x)
    assert ((top3 > 0).sum(1) <= 3).all()
    r1 = oracle.Oracle(victim, decimals=1)(x)
    assert torch.allclose(r1 * 10, (r1 * 10).round(), atol=1e-5)
    assert (r1 - full).abs().max() <= 0.05 + 1e-6
    labels = oracle.Oracle(victim, output="label")(x)
    assert labels.dtype == torch.int64 and torch.equal(labels, full.argmax(1))
    hot = oracle.Oracle(victim, temperature=20.0)(x)
    assert torch.equal(hot.argmax(1), full.argmax(1))
    assert (hot.max(1).values <= full.max(1).values + 1e-6).all()


def test_oracle_rejects_bad_queries_and_policies(victim):
    o = oracle.Oracle(victim)
    with pytest.raises(ValueError, match=r"shape \(N, 6\)"):
        o(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="finite"):
        o(torch.full((1, 6), float("nan")))
    with pytest.raises(ValueError, match="top_k"):
        oracle.Oracle(victim, top_k=0)
    with pytest.raises(ValueError, match="output"):
        oracle.OutputPolicy(output="logits")
    with pytest.raises(ValueError, match="not both"):
        oracle.Oracle(victim, oracle.OutputPolicy(), top_k=2)


# ---------------------------------------------------------------- metrics
def test_accuracy_and_fidelity():
    assert metrics.accuracy(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert metrics.fidelity(probs, torch.tensor([0, 0])) == 0.5
    with pytest.raises(ValueError, match="same length"):
        metrics.accuracy(torch.tensor([0, 1]), torch.tensor([0]))


def test_precision_recall_by_hand():
    pr = metrics.precision_recall(torch.tensor([1, 1, 0, 0, 1]), torch.tensor([1, 0, 0, 1, 1]))
    assert pr.precision == pytest.approx(2 / 3) and pr.recall == pytest.approx(2 / 3) and pr.accuracy == pytest.approx(3 / 5)


def test_roc_auc_and_tpr_at_fpr():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    perfect = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    assert metrics.roc_auc(perfect, labels) == 1.0
    assert metrics.roc_auc(-perfect, labels) == 0.0
    assert metrics.tpr_at_fpr(perfect, labels, fpr=0.0) == 1.0
    # one non-member outscores every member: at FPR 0 nothing is caught, at 25% all are
    scores = torch.tensor([0.95, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    assert metrics.tpr_at_fpr(scores, labels, fpr=0.0) == 0.0
    assert metrics.tpr_at_fpr(scores, labels, fpr=0.25) == 1.0
    # AUC equals the probability that a random member outscores a random non-member
    gen = utils.make_generator(0)
    s = torch.randn(200, generator=gen)
    m = torch.rand(200, generator=gen) < 0.5
    pairs = (s[m][:, None] > s[~m][None, :]).float().mean()
    assert metrics.roc_auc(s, m) == pytest.approx(float(pairs), abs=1e-6)
    with pytest.raises(ValueError, match="both members and non-members"):
        metrics.roc(s, torch.ones(200))


def test_tpr_at_fpr_with_tied_scores_matches_a_direct_count():
    scores = torch.tensor([4.0, 4, 3, 3, 2, 2, 1, 1, 0, 0])
    member = torch.tensor([1, 0] * 5)
    for fpr in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        best = 0.0  # the highest TPR over thresholds "score >= t" whose FPR is at most fpr
        for t in scores.unique():
            pred = scores >= t
            if float(pred[member == 0].double().mean()) <= fpr + 1e-12:
                best = max(best, float(pred[member == 1].double().mean()))
        assert metrics.tpr_at_fpr(scores, member, fpr=fpr) == pytest.approx(best)


def test_normalized_entropy():
    p = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    h = metrics.normalized_entropy(p)
    assert torch.allclose(h, torch.tensor([0.0, 1.0, math.log(2) / math.log(3)]), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        metrics.normalized_entropy(torch.tensor([0.5, 0.5]))


# ---------------------------------------------------------------- utils and grading
def test_generators_are_explicit():
    a = torch.rand(3, generator=utils.make_generator(5))
    b = torch.rand(3, generator=utils.make_generator(5))
    assert torch.equal(a, b)
    g = utils.make_generator(1)
    assert utils.make_generator(g) is g
    with pytest.raises(ValueError, match="seed must be"):
        utils.make_generator("7")


def test_get_device_honours_override(monkeypatch):
    monkeypatch.setenv("LABKIT_DEVICE", "cpu")
    assert utils.get_device() == torch.device("cpu")
    monkeypatch.setenv("LABKIT_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="LABKIT_DEVICE"):
        utils.get_device()


def test_input_checks_name_what_was_expected():
    with pytest.raises(ValueError, match=r"must have shape \(N, 3\), got \(2, 4\)"):
        utils.as_features(torch.zeros(2, 4), shape=(3,))
    with pytest.raises(ValueError, match="1-D"):
        utils.as_labels(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="sum to 1"):
        utils.as_probabilities(torch.tensor([[0.5, 0.6]]))


def _reference(x):
    return x + 1


def test_forbid_catches_aliases_and_restores():
    alias = _reference

    @torch.no_grad()
    def decorated(x):
        return x * 2

    class Api:
        def method(self):
            return 3

    with grading.forbid(_reference, decorated, Api.method):
        with pytest.raises(grading.ForbiddenCall, match="_reference is the reference"):
            alias(1)
        with pytest.raises(grading.ForbiddenCall):
            decorated(torch.ones(1))
        with pytest.raises(grading.ForbiddenCall):
            Api().method()
    assert alias(1) == 2 and Api().method() == 3 and float(decorated(torch.ones(1))) == 2.0
    with pytest.raises(TypeError, match="Python functions"):
        with grading.forbid(len):
            pass


def test_forbid_restores_after_an_error():
    with pytest.raises(KeyError):
        with grading.forbid(_reference):
            raise KeyError("boom")
    assert _reference(1) == 2


def test_forbid_refuses_copies_of_a_reference():
    """Copying a reference's code (same code object, pasted source, a wrapper around a copy) is caught
    before the block runs; honest code and the reference itself (whose calls raise) are not."""
    import inspect as _inspect
    import textwrap
    import types

    from labkit.metrics import normalized_entropy

    def honest(p):
        return -(p * p.clamp_min(1e-12).log()).sum(1) / math.log(p.shape[1])

    def check(namespace):
        code = "with forbid(ref):\n    pass\n"
        exec(code, {**namespace, "forbid": grading.forbid, "ref": normalized_entropy, "__name__": "__main__"})

    check({"honest": honest, "alias": normalized_entropy})  # no copy: fine
    same_code = types.FunctionType(normalized_entropy.__code__, normalized_entropy.__globals__)
    pasted: dict = {}
    exec(textwrap.dedent(_inspect.getsource(normalized_entropy)), dict(normalized_entropy.__globals__), pasted)
    assert pasted["normalized_entropy"] is not normalized_entropy

    def wrapper(p, _f=same_code):
        return _f(p)

    def closing():
        inner = same_code
        return lambda p: inner(p)

    copies = {"same_code": same_code, "pasted": pasted["normalized_entropy"], "closure": closing(), "default_arg": wrapper}
    for name, value in copies.items():
        with pytest.raises(grading.CopiedReference, match=f"{name} .*normalized_entropy"):
            check({name: value})


def test_forbid_sees_through_renamed_locals_and_messages_in_long_references():
    """A pasted reference with its local names and error messages changed is still a copy when the
    reference is long enough to make that no accident; a short one is left alone."""
    import ast
    import inspect as _inspect
    import textwrap

    from labkit.watermark import commit, ownership_game

    def paste(fn, renames):
        """fn's source with local names renamed and every string constant but the docstring replaced."""
        tree = ast.parse(textwrap.dedent(_inspect.getsource(fn)))
        doc = tree.body[0].body[0].value

        class Edit(ast.NodeTransformer):
            def visit_Name(self, node):
                node.id = renames.get(node.id, node.id)
                return node

            def visit_Constant(self, node):
                if isinstance(node.value, str) and node is not doc:
                    node.value = "a message of my own"
                return node

        ns: dict = {}
        exec(compile(ast.fix_missing_locations(Edit().visit(tree)), "<pasted>", "exec"), dict(fn.__globals__), ns)
        return ns[fn.__name__]

    long_ref = ownership_game
    assert len(grading._fingerprint(long_ref.__code__, normalized=True)) >= grading.MIN_NORMALIZED_OPS
    edited = paste(long_ref, {"outcomes": "results", "gen": "rng"})
    assert grading._fingerprint(edited.__code__) != grading._fingerprint(long_ref.__code__)  # not an exact copy
    assert grading.find_copies({"mine": edited}, [long_ref]) == ["mine (the code of labkit.watermark.ownership_game)"]
    assert grading.find_copies({"mine": paste(long_ref, {})}, [long_ref])  # unchanged names: caught as before
    short_ref = commit
    assert len(grading._fingerprint(short_ref.__code__, normalized=True)) < grading.MIN_NORMALIZED_OPS
    assert grading.find_copies({"mine": paste(short_ref, {"r": "nonce"})}, [short_ref]) == []


def test_format_table_escapes_pipes_and_formats_floats():
    from labkit.plots import format_table

    text = format_table([{"a|b": 0.12345, "n": 3}])
    assert text.splitlines() == ["| a\\|b | n |", "|---|---|", "| 0.123 | 3 |"]


def test_oracle_needs_shape_and_class_count():
    bare = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="input_shape"):
        oracle.Oracle(bare)
    with pytest.raises(ValueError, match="n_classes"):
        oracle.Oracle(bare, input_shape=(3,))


def test_model_seeds_fix_initial_weights_whatever_the_global_generator():
    for make in (lambda s: models.MLP(6, 3, seed=s), lambda s: models.SmallCNN((1, 8, 8), 3, seed=s),
                 lambda s: models.LogisticRegression(6, 2, seed=s)):
        state = torch.get_rng_state()
        a = make(1)
        torch.rand(3)  # move the global generator on: a seeded model must not care
        b, c = make(1), make(2)
        torch.rand(3)
        assert not torch.equal(torch.get_rng_state(), state)
        assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert not any(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    with pytest.raises(ValueError, match="seed"):
        models.MLP(6, 3, seed="1")
