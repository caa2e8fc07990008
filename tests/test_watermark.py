"""labkit.watermark: commitments, trigger sets, KeyGen / Mark / Verify, removal attacks."""
import hashlib
import math

import pytest
import torch
from torch import nn

from labkit import watermark as wm
from labkit.data import load_digits, make_splits
from labkit.experiments.watermark import extraction_attack
from labkit.metrics import fidelity
from labkit.models import MLP, SmallCNN
from labkit.oracle import Oracle
from labkit.train import evaluate, fit, predict

N = 50  # trigger set size used throughout
EPS = 0.1


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world():
    """Digits split into owner / test / adversary, a ground-truth model, a key, marked and unmarked models."""
    s = make_splits(load_digits(), target_train=1000, target_test=397, attacker=400, seed=0, stratify=True)
    f = MLP(64, 10, hidden=(128,), seed=7)
    fit(f, s.target_train.x, s.target_train.y, epochs=40, seed=7)
    mk, vk = wm.keygen(N, ground_truth=f, seed=0)
    marked = wm.mark(MLP(64, 10, hidden=(256,)), mk, s.target_train, mode="fromscratch", seed=0)
    unmarked = [MLP(64, 10, hidden=(256,), seed=100 + i) for i in range(3)]
    for i, m in enumerate(unmarked):
        fit(m, s.target_train.x, s.target_train.y, epochs=40, seed=100 + i)
    return dict(splits=s, f=f, mk=mk, vk=vk, marked=marked, unmarked=unmarked)


class Lookup(nn.Module):
    """A 'model' that answers fixed labels on the rows of T (one-hot logits of the nearest row)."""

    def __init__(self, T, labels, n_classes=10):
        super().__init__()
        self.T, self.labels, self.n_classes = T.flatten(1), labels, n_classes
        self.input_shape = tuple(T.shape[1:])

    def forward(self, x):
        idx = torch.cdist(x.flatten(1), self.T).argmin(1)
        return 10.0 * nn.functional.one_hot(self.labels[idx], self.n_classes).float()


def _with(mk, *, T=None, T_L=None, r_t=None, r_L=None):
    return wm.MarkingKey(wm.Backdoor(mk.T if T is None else T, mk.T_L if T_L is None else T_L),
                         mk.r_t if r_t is None else r_t, mk.r_L if r_L is None else r_L)


def _flip_bit(r: bytes) -> bytes:
    return bytes([r[0] ^ 1]) + r[1:]


# ----------------------------------------------------------------------------- commitments


def test_encoding_is_canonical_and_matches_its_documented_format():
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    # by hand: tag, dtype name, ndim, sizes, little-endian float32 values in C order
    import struct
    manual = b"labkit.tensor\x00" + b"torch.float32\x00" + (2).to_bytes(8, "little") + (2).to_bytes(8, "little") + (3).to_bytes(8, "little")
    manual += struct.pack("<6f", *range(6))
    assert wm.encode(x) == manual
    assert wm.encode(x.t().contiguous().t()) == manual  # strides do not matter
    assert wm.encode(x.clone().requires_grad_(True)) == manual
    assert wm.encode(7) == b"labkit.int\x00" + (7).to_bytes(8, "little", signed=True)
    distinct = [x, x.double(), x.reshape(3, 2), x.reshape(6), torch.tensor(7), 7, 8, torch.tensor([7])]
    assert len({wm.encode(v) for v in distinct}) == len(distinct)
    for bad in (True, 3.0, "7", [1, 2]):
        with pytest.raises(ValueError, match="torch.Tensor or an int"):
            wm.encode(bad)


def test_commit_is_sha256_of_nonce_and_encoding():
    r = bytes(range(32))
    x = torch.rand(64, generator=torch.Generator().manual_seed(0))
    assert wm.commit(x, r=r).c == hashlib.sha256(r + wm.encode(x)).digest()
    assert wm.commit(x, r=r) == wm.commit(x.clone(), r=r)  # Com is a function of (x, r)
    assert wm.commit(3, r=r).r == r


def test_commitments_hide_with_fresh_nonces():
    x = torch.zeros(64)
    coms = [wm.commit(x) for _ in range(20)]
    assert all(len(c.r) == wm.NONCE_BYTES == 32 and len(c.c) == 32 for c in coms)
    assert len({c.r for c in coms}) == 20 and len({c.c for c in coms}) == 20
    # the 10 possible labels cannot be recovered by hashing candidates without r
    c = wm.commit(4).c
    assert all(hashlib.sha256(wm.encode(y)).digest() != c for y in range(10))
    # different x (one pixel), or different r (one bit): different c
    r = coms[0].r
    x2 = x.clone()
    x2[5] = 1e-6
    assert wm.commit(x2, r=r).c != wm.commit(x, r=r).c
    assert wm.commit(x, r=_flip_bit(r)).c != wm.commit(x, r=r).c


def test_commitments_bind():
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(1))
    com = wm.commit(x)
    assert wm.open_commitment(com.c, x, com.r) is True
    x2 = x.clone()
    x2[0, 3, 3] += 1e-3
    assert wm.open_commitment(com.c, x2, com.r) is False
    assert wm.open_commitment(com.c, x.double(), com.r) is False
    assert wm.open_commitment(com.c, x, _flip_bit(com.r)) is False
    lab = wm.commit(3)
    assert wm.open_commitment(lab.c, 3, lab.r) and not wm.open_commitment(lab.c, 4, lab.r)
    assert not wm.open_commitment(lab.c, torch.tensor(3), lab.r)  # an int and a tensor are different messages


def test_commit_rejects_bad_nonces_and_commitments():
    with pytest.raises(ValueError, match="32 bytes"):
        wm.commit(1, r=b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        wm.commit(1, r="x" * 32)
    with pytest.raises(ValueError, match="32-byte"):
        wm.open_commitment(b"abc", 1, bytes(32))


# ----------------------------------------------------------------------------- trigger sets


def test_abstract_images_are_deterministic_shaped_and_unlike_digits():
    T = wm.abstract_images(40, seed=3)
    assert T.shape == (40, 64) and T.dtype == torch.float32
    assert float(T.min()) == 0.0 and float(T.max()) == 1.0
    assert torch.equal(T, wm.abstract_images(40, seed=3))
    assert not torch.equal(T, wm.abstract_images(40, seed=4))
    img = wm.abstract_images(5, input_shape=(1, 8, 8), seed=3)
    assert img.shape == (5, 1, 8, 8)
    # the images are distinct from one another
    D = torch.cdist(T, T) + 1e9 * torch.eye(40)
    assert float(D.min()) > 0.3
    for bad in ((63,), (8, 8)):
        with pytest.raises(ValueError, match="input_shape"):
            wm.abstract_images(3, input_shape=bad)
    with pytest.raises(ValueError, match="positive int"):
        wm.abstract_images(0)


def test_trigger_labels_never_equal_the_ground_truth(world):
    f = world["f"]
    for seed in range(5):
        b = wm.sample_backdoor(200, f, seed=seed)
        assert len(b) == 200 and b.T_L.dtype == torch.int64
        assert not bool((predict(f, b.T) == b.T_L).any())
    # with a callable oracle (an Oracle returning probabilities) too
    b = wm.sample_backdoor(100, Oracle(f), seed=0)
    assert not bool((predict(f, b.T) == b.T_L).any())
    assert torch.equal(b.T, wm.sample_backdoor(100, f, seed=0).T)  # same seed, same backdoor


def test_trigger_labels_are_uniform_over_the_other_classes():
    b = wm.sample_backdoor(4500, lambda x: torch.zeros(x.shape[0], dtype=torch.int64), n_classes=10, seed=0)
    counts = torch.bincount(b.T_L, minlength=10)
    assert counts[0] == 0
    chi2 = float((((counts[1:] - 500.0) ** 2) / 500.0).sum())
    assert chi2 < 27.9  # 99.95% quantile of chi-square with 8 degrees of freedom


def test_sample_backdoor_needs_the_number_of_classes():
    with pytest.raises(ValueError, match="n_classes"):
        wm.sample_backdoor(5, lambda x: torch.zeros(x.shape[0], dtype=torch.int64))


def test_ground_truth_labels_accept_models_oracles_and_callables(world):
    f, T = world["f"], world["mk"].T
    y = wm.ground_truth_labels(f, T)
    assert torch.equal(y, predict(f, T))
    assert torch.equal(wm.ground_truth_labels(Oracle(f), T), y)
    assert torch.equal(wm.ground_truth_labels(Oracle(f, output="label"), T), y)
    with pytest.raises(ValueError, match="nn.Module or a callable"):
        wm.ground_truth_labels("f", T)


# ----------------------------------------------------------------------------- KeyGen


def test_keygen_follows_the_lecture(world):
    mk, vk, f = world["mk"], world["vk"], world["f"]
    assert isinstance(mk, wm.MarkingKey) and isinstance(vk, wm.VerificationKey)
    assert len(mk) == len(vk) == N and mk.T.shape == (N, 64)
    b = wm.sample_backdoor(N, f, seed=0)  # step 1 is SampleBackdoor with the same generator
    assert torch.equal(mk.T, b.T) and torch.equal(mk.T_L, b.T_L)
    nonces = mk.r_t + mk.r_L  # step 2: 2n distinct 256-bit nonces, 2n commitments that open
    assert len(set(nonces)) == 2 * N and all(len(r) == 32 for r in nonces)
    for i in range(N):
        assert wm.open_commitment(vk.c_t[i], mk.T[i], mk.r_t[i])
        assert wm.open_commitment(vk.c_L[i], int(mk.T_L[i]), mk.r_L[i])
    assert not wm.open_commitment(vk.c_t[0], mk.T[1], mk.r_t[0])


def test_keygen_seed_fixes_the_backdoor_but_not_the_nonces(world):
    f = world["f"]
    (mk1, vk1), (mk2, vk2) = wm.keygen(10, ground_truth=f, seed=5), wm.keygen(10, ground_truth=f, seed=5)
    assert torch.equal(mk1.T, mk2.T) and torch.equal(mk1.T_L, mk2.T_L)
    assert set(mk1.r_t).isdisjoint(mk2.r_t) and set(vk1.c_L).isdisjoint(vk2.c_L)


def test_keys_reject_inconsistent_sizes(world):
    mk = world["mk"]
    with pytest.raises(ValueError, match="one nonce per trigger"):
        wm.MarkingKey(mk.b, mk.r_t[:-1], mk.r_L)
    with pytest.raises(ValueError, match="as many label commitments"):
        wm.VerificationKey(world["vk"].c_t, world["vk"].c_L[:-1])


# ----------------------------------------------------------------------------- Mark


def test_mixed_batches_cover_the_data_once_and_deal_triggers_evenly(world):
    mk = world["mk"]
    x = torch.arange(130 * 64, dtype=torch.float32).reshape(130, 64) + 1000.0  # rows tell records apart
    y = torch.arange(130) % 10
    batches = wm.mixed_batches(x, y, mk.b, batch_size=32, k=8, seed=1)
    assert [len(yb) for _, yb in batches] == [40, 40, 40, 40, 10]
    data_rows = torch.cat([xb[:-8] for xb, _ in batches])
    assert sorted(data_rows[:, 0].tolist()) == sorted(x[:, 0].tolist())  # every record exactly once
    for xb, yb in batches:
        assert torch.equal(yb[:-8], y[(xb[:-8, 0] - 1000).long() // 64])
        trig = torch.cdist(xb[-8:], mk.T).argmin(1)  # the appended rows are triggers with their labels
        assert torch.equal(xb[-8:], mk.T[trig]) and torch.equal(yb[-8:], mk.T_L[trig])
    used = torch.cat([torch.cdist(xb[-8:], mk.T).argmin(1) for xb, _ in batches])
    counts = torch.bincount(used, minlength=N)  # 40 trigger slots over 50 triggers: each at most once
    assert int(counts.max()) - int(counts.min()) <= 1 and int(counts.sum()) == 40
    again = wm.mixed_batches(x, y, mk.b, batch_size=32, k=8, seed=1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    many = wm.mixed_batches(x, y, mk.b, batch_size=10, k=20, seed=2)  # 260 slots: 5 or 6 each
    counts = torch.bincount(torch.cat([torch.cdist(xb[-20:], mk.T).argmin(1) for xb, _ in many]), minlength=N)
    assert set(counts.tolist()) <= {5, 6}
    plain = wm.mixed_batches(x, y, mk.b, batch_size=32, k=0, seed=1)
    assert [len(yb) for _, yb in plain] == [32, 32, 32, 32, 2]
    with pytest.raises(ValueError, match="k >= 0"):
        wm.mixed_batches(x, y, mk.b, k=-1)
    with pytest.raises(ValueError, match="shape"):
        wm.mixed_batches(x[:, :10], y, mk.b)


def test_mark_embeds_the_watermark_and_preserves_functionality(world):
    s, mk, marked = world["splits"], world["mk"], world["marked"]
    assert wm.trigger_accuracy(marked, mk) == 1.0
    acc_marked = evaluate(marked, s.target_test.x, s.target_test.y)
    acc_plain = max(evaluate(m, s.target_test.x, s.target_test.y) for m in world["unmarked"])
    assert acc_marked > 0.94 and acc_marked >= acc_plain - 0.02
    assert all(wm.trigger_accuracy(m, mk) <= 0.2 for m in world["unmarked"])


def test_mark_pretrained_starts_from_the_model_and_leaves_it_unchanged(world):
    s, mk, base = world["splits"], world["mk"], world["unmarked"][0]
    before = [p.clone() for p in base.parameters()]
    pre = wm.mark(base, mk, s.target_train, mode="pretrained", epochs=1, lr=1e-9)
    scratch = wm.mark(base, mk, s.target_train, mode="fromscratch", epochs=1, lr=1e-9)
    assert all(torch.equal(p, q) for p, q in zip(before, base.parameters()))  # M itself untouched
    assert all((p - q).abs().max() < 1e-5 for p, q in zip(before, pre.parameters()))
    assert any((p - q).abs().max() > 1e-2 for p, q in zip(before, scratch.parameters()))


def test_mark_pretrained_marks_a_trained_model(world):
    s, mk, base = world["splits"], world["mk"], world["unmarked"][1]
    pre = wm.mark(base, mk, s.target_train, mode="pretrained", seed=1)
    assert wm.trigger_accuracy(pre, mk) >= 0.98
    assert evaluate(pre, s.target_test.x, s.target_test.y) >= evaluate(base, s.target_test.x, s.target_test.y) - 0.02


def test_mark_is_deterministic_by_seed(world):
    s, mk = world["splits"], world["mk"]
    small = s.target_train.subset(torch.arange(200))
    a, b, c = (wm.mark(MLP(64, 10, hidden=(16,)), mk, small, epochs=2, seed=sd) for sd in (3, 3, 4))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_mark_rejects_bad_arguments(world):
    s, mk = world["splits"], world["mk"]
    with pytest.raises(ValueError, match="mode"):
        wm.mark(MLP(64, 10), mk, s.target_train, mode="finetune")
    with pytest.raises(ValueError, match="MarkingKey"):
        wm.mark(MLP(64, 10), world["vk"], s.target_train)
    img = load_digits(image=True)
    with pytest.raises(ValueError, match="shape"):
        wm.mark(SmallCNN(), mk, img)


def test_mark_works_with_a_cnn_on_images(world):
    f = world["f"]
    img = load_digits(image=True).subset(torch.arange(300))
    mk, _ = wm.keygen(10, ground_truth=lambda x: predict(f, x.flatten(1)), n_classes=10, input_shape=(1, 8, 8), seed=0)
    cnn = wm.mark(SmallCNN(width=8), mk, img, epochs=30, lr=3e-3, seed=0)
    assert wm.trigger_accuracy(cnn, mk) >= 0.9
    assert evaluate(cnn, img.x, img.y) > 0.7  # and it learns the digits


# ----------------------------------------------------------------------------- Verify


def test_verify_accepts_the_marked_model_and_rejects_unmarked_ones(world):
    mk, vk, f = world["mk"], world["vk"], world["f"]
    assert wm.verify(mk, vk, world["marked"], ground_truth=f, epsilon=EPS) == 1
    assert wm.verify(mk, vk, world["marked"], ground_truth=f, epsilon=0.0) == 1
    for m in world["unmarked"]:
        assert wm.verify(mk, vk, m, ground_truth=f, epsilon=EPS) == 0
    assert wm.verify(mk, vk, f, ground_truth=f, epsilon=EPS) == 0  # the ground truth never agrees with T_L


def test_verify_step1_rejects_a_label_equal_to_the_ground_truth(world):
    """A key whose commitments are valid and whose model passes step 3 is still rejected by step 1."""
    mk, vk, f = world["mk"], world["vk"], world["f"]
    T_L = mk.T_L.clone()
    T_L[0] = predict(f, mk.T[:1])[0]
    com = wm.commit(int(T_L[0]))
    mk1 = _with(mk, T_L=T_L, r_L=(com.r,) + mk.r_L[1:])
    vk1 = wm.VerificationKey(vk.c_t, (com.c,) + vk.c_L[1:])
    assert wm.open_commitment(vk1.c_L[0], int(T_L[0]), mk1.r_L[0])
    model = Lookup(mk.T, T_L)  # classifies every trigger as the (tampered) T_L
    assert wm.verify(mk1, vk1, model, ground_truth=f, epsilon=0.0) == 0
    honest = Lookup(mk.T, mk.T_L)
    assert wm.verify(mk, vk, honest, ground_truth=f, epsilon=0.0) == 1


def test_verify_step2_rejects_a_key_that_does_not_open(world):
    """Changing one label (to another wrong label), one nonce bit or one pixel: step 2 fails."""
    mk, vk, f = world["mk"], world["vk"], world["f"]
    gt = predict(f, mk.T)
    T_L = mk.T_L.clone()
    T_L[0] = next(c for c in range(10) if c != int(mk.T_L[0]) and c != int(gt[0]))
    T = mk.T.clone()
    T[0, 0] += 1 / 16
    tampered = [
        _with(mk, T_L=T_L),
        _with(mk, r_t=(_flip_bit(mk.r_t[0]),) + mk.r_t[1:]),
        _with(mk, r_L=mk.r_L[:-1] + (_flip_bit(mk.r_L[-1]),)),
        _with(mk, T=T),
    ]
    for key in tampered:
        model = Lookup(key.T, key.T_L)  # agrees with the tampered key on every trigger
        assert wm.verify(key, vk, model, ground_truth=f, epsilon=0.0) == 0
    other_mk, other_vk = wm.keygen(N, ground_truth=f, seed=0)  # same backdoor, other nonces
    assert wm.verify(mk, other_vk, world["marked"], ground_truth=f, epsilon=EPS) == 0
    assert wm.verify(other_mk, other_vk, world["marked"], ground_truth=f, epsilon=EPS) == 1


def test_verify_step3_counts_mistakes_against_epsilon(world):
    mk, vk, f = world["mk"], world["vk"], world["f"]
    gt = predict(f, mk.T)
    for mistakes in range(0, 12):
        labels = mk.T_L.clone()
        labels[:mistakes] = gt[:mistakes]  # the model answers the ground truth on the first triggers
        model = Lookup(mk.T, labels)
        assert wm.verify(mk, vk, model, ground_truth=f, epsilon=EPS) == int(mistakes <= 5)
        assert wm.verify(mk, vk, model, ground_truth=f, epsilon=0.2) == int(mistakes <= 10)
    assert wm.verify(mk, vk, Lookup(mk.T, gt), ground_truth=f, epsilon=1.0) == 1


def test_verify_rejects_bad_arguments(world):
    mk, vk, f, m = world["mk"], world["vk"], world["f"], world["marked"]
    with pytest.raises(ValueError, match="epsilon"):
        wm.verify(mk, vk, m, ground_truth=f, epsilon=1.5)
    small_mk, small_vk = wm.keygen(3, ground_truth=f, seed=0)
    with pytest.raises(ValueError, match="commitment pairs"):
        wm.verify(mk, small_vk, m, ground_truth=f, epsilon=EPS)
    with pytest.raises(ValueError, match="MarkingKey"):
        wm.verify(vk, mk, m, ground_truth=f, epsilon=EPS)


# ----------------------------------------------------------------------------- removal attacks


def test_reinitialize_is_seeded_and_uses_the_default_bounds():
    a, b = wm.reinitialize_(MLP(64, 10), seed=0), wm.reinitialize_(MLP(64, 10), seed=0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    w = a.net[0].weight.detach()
    assert float(w.abs().max()) <= 1 / math.sqrt(64) and float(w.abs().max()) > 0.9 / math.sqrt(64)
    with pytest.raises(ValueError, match="Linear and Conv"):
        wm.reinitialize_(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3)), seed=0)


def test_last_layer_is_the_output_layer():
    mlp, cnn = MLP(64, 10, hidden=(32, 16)), SmallCNN()
    assert wm.last_layer(mlp) is mlp.net[-1] and wm.last_layer(cnn) is cnn.head
    with pytest.raises(ValueError, match="output layer"):
        wm.last_layer(nn.ReLU())


@pytest.mark.parametrize("mode", wm.FINE_TUNE_MODES)
def test_fine_tune_attacks_touch_the_layers_they_name(world, mode):
    s, marked = world["splits"], world["marked"]
    original = [p.clone() for p in marked.parameters()]
    attacked = wm.fine_tune_attack(marked, s.attacker, mode=mode, epochs=2, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(original, marked.parameters()))  # victim untouched
    assert all(p.requires_grad for p in attacked.parameters())
    body_same = all(torch.equal(p, q) for p, q in zip(marked.net[0].parameters(), attacked.net[0].parameters()))
    assert body_same == mode.endswith("LL")
    head_change = float((attacked.net[-1].weight - marked.net[-1].weight).detach().abs().max())
    assert head_change > 0
    if mode.startswith("RT"):  # a fresh head: as far from the old one as independent weights
        tuned = wm.fine_tune_attack(marked, s.attacker, mode="FT" + mode[2:], epochs=2, seed=0)
        assert head_change > 5 * float((tuned.net[-1].weight - marked.net[-1].weight).detach().abs().max())
    assert evaluate(attacked, s.target_test.x, s.target_test.y) > 0.6
    again = wm.fine_tune_attack(marked, s.attacker, mode=mode, epochs=2, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(attacked.parameters(), again.parameters()))


def test_fine_tuning_the_last_layer_keeps_the_watermark(world):
    s, mk, vk, f = world["splits"], world["mk"], world["vk"], world["f"]
    attacked = wm.fine_tune_attack(world["marked"], s.attacker, mode="FTLL", epochs=20, seed=0)
    assert wm.trigger_accuracy(attacked, mk) >= 0.9
    assert wm.verify(mk, vk, attacked, ground_truth=f, epsilon=EPS) == 1


def test_fine_tune_attack_rejects_bad_modes(world):
    with pytest.raises(ValueError, match="FTLL"):
        wm.fine_tune_attack(world["marked"], world["splits"].attacker, mode="ftll")


def test_extraction_attack_copies_the_model_through_the_oracle(world):
    s, marked = world["splits"], world["marked"]
    sur = extraction_attack(marked, s.attacker.x, MLP(64, 10, hidden=(128,), seed=0), epochs=40, seed=0)
    assert fidelity(predict(sur, s.target_test.x), predict(marked, s.target_test.x)) > 0.9
    assert wm.trigger_accuracy(sur, world["mk"]) < 0.5  # the trigger set was never queried


def test_brute_force_opening_recovers_an_unsalted_label_but_not_a_commitment():
    import hashlib

    from labkit.watermark import brute_force_opening, commit, encode

    assert brute_force_opening(hashlib.sha256(encode(42)).digest(), range(100)) == 42
    assert brute_force_opening(hashlib.sha256(encode(42)).digest(), range(10)) is None
    assert brute_force_opening(commit(42).c, range(100)) is None  # the nonce hides the label
    img = torch.rand(1, 8, 8)
    assert brute_force_opening(hashlib.sha256(encode(img)).digest(), [torch.zeros(1, 8, 8), img]) is img


# ----------------------------------------------------------------------------- security games
from labkit.experiments import watermark as exwm  # noqa: E402


@pytest.fixture(scope="module")
def games(world):
    """The three verifiers and the five scripted adversaries of the book's table, on the world's key."""
    f, s = world["f"], world["splits"]
    verifiers = {skip: exwm.verifier(wm.verify, ground_truth=f, epsilon=EPS, skip=skip) for skip in (None, "commitments", "labels")}
    pool = torch.cat([wm.abstract_images(1000, seed=777), s.attacker.x])
    unforgers = {"seeds": exwm.SeedGuesser(f, n_classes=10), "disagreement": exwm.DisagreementForger(pool, f),
                 "replay": exwm.Replay(wm.keygen(N, ground_truth=f, seed=5).mk)}
    owners = {"real digits": exwm.RealDataForger(s.target_test.x, s.target_test.y, n=N), "own keygen": exwm.OwnKeyGen(f, n=N)}
    models = [world["marked"], *world["unmarked"]]
    return dict(verifiers=verifiers, unforgers=unforgers, owners=owners, models=models)


def _play(world, games, game, adversary, skip, trials=3):
    ver = games["verifiers"][skip]
    if game == "unforgeability":
        return wm.unforgeability_game(games["unforgers"][adversary], world["vk"], world["marked"], verify=ver, trials=trials, seed=0)
    return wm.ownership_game(games["owners"][adversary], games["models"], verify=ver, trials=trials, seed=0)


def test_the_verifiers_agree_with_verify_on_honest_keys(world, games):
    for ver in games["verifiers"].values():
        assert ver(world["mk"], world["vk"], world["marked"]) == 1
        assert ver(world["mk"], world["vk"], world["unmarked"][0]) == 0


def test_the_verifier_without_step_1_answers_per_trigger(world, games):
    """A Verify that asks O^f about one trigger at a time, in another order, works behind skip="labels"."""
    def one_at_a_time(mk, vk, M, *, ground_truth, epsilon):
        n = len(mk)
        for i in reversed(range(n)):
            if int(wm.ground_truth_labels(ground_truth, mk.T[i : i + 1])[0]) == int(mk.T_L[i]):
                return 0
        return wm.verify(mk, vk, M, ground_truth=ground_truth, epsilon=epsilon)

    no_step_1 = exwm.verifier(one_at_a_time, ground_truth=world["f"], epsilon=EPS, skip="labels")
    forged = games["owners"]["real digits"](seed=0)  # true labels: only step 1 would reject them
    assert no_step_1(*forged, world["marked"]) == 1
    assert no_step_1(world["mk"], world["vk"], world["marked"]) == 1


def test_real_verify_makes_every_scripted_adversary_lose(world, games):
    for name in games["unforgers"]:
        assert _play(world, games, "unforgeability", name, None).wins == 0, name
    for name in games["owners"]:
        assert _play(world, games, "ownership", name, None).wins == 0, name


def test_each_broken_verifier_loses_to_the_adversary_it_should(world, games):
    # without step 2 (commitments): the adversaries that recover or build a trigger set win every trial
    for name in ("seeds", "disagreement"):
        assert _play(world, games, "unforgeability", name, "commitments").win_rate == 1.0, name
    assert _play(world, games, "unforgeability", "replay", "commitments").wins == 0  # M_hat ignores another key
    assert _play(world, games, "ownership", "real digits", "commitments").wins == 0  # step 1 still stops it
    # without step 1 (T_L != f): the real-data forger claims the models it never saw
    assert _play(world, games, "ownership", "real digits", "labels").win_rate == 1.0
    for name in games["unforgers"]:
        assert _play(world, games, "unforgeability", name, "labels").wins == 0, name  # step 2 still stops them
    assert _play(world, games, "ownership", "own keygen", "labels").wins == 0


def test_security_games_table_has_a_row_per_adversary_and_a_column_per_verifier(world, games):
    named = {"Verify": games["verifiers"][None], "no step 2": games["verifiers"]["commitments"]}
    rows = exwm.security_games_table(world["vk"], world["marked"], games["models"], verifiers=named,
                                     unforgers={"replay": games["unforgers"]["replay"]}, owners={"real digits": games["owners"]["real digits"]}, trials=2)
    assert [(r["game"], r["adversary"]) for r in rows] == [("unforgeability", "replay"), ("non-trivial ownership", "real digits")]
    assert all(str(r[v]) == "0/2" for r in rows for v in named)


class _Coin:
    """An adversary whose key carries a coin from the game's generator in its first label; it records its calls."""

    def __init__(self, mk):
        self.mk, self.calls = mk, []

    def __call__(self, vk, M, *, seed):
        assert isinstance(seed, torch.Generator)
        self.calls.append(M)
        T_L = self.mk.T_L.clone()
        T_L[0] = int(torch.randint(0, 2, (1,), generator=seed))
        return wm.MarkingKey(wm.Backdoor(self.mk.T, T_L), self.mk.r_t, self.mk.r_L)


def _first_label(mk, vk, M):
    return int(mk.T_L[0])


def test_a_game_result_counts_trials_and_wins(world):
    r = wm.GameResult((1, 0, 1, 1))
    assert (r.wins, r.trials, r.win_rate, str(r)) == (3, 4, 0.75, "3/4")
    coin = _Coin(world["mk"])
    res = wm.unforgeability_game(coin, world["vk"], world["marked"], verify=_first_label, trials=40, seed=3)
    assert res.trials == 40 == len(coin.calls) and 5 < res.wins < 35
    assert res == wm.unforgeability_game(_Coin(world["mk"]), world["vk"], world["marked"], verify=_first_label, trials=40, seed=3)
    # ownership: a trial is won when Verify accepts at least one model
    pair = wm.KeyPair(world["mk"], world["vk"])
    accept_marked = lambda mk, vk, M: int(M is world["marked"])  # noqa: E731
    assert wm.ownership_game(lambda *, seed: pair, world["unmarked"], verify=accept_marked, trials=3).outcomes == (0, 0, 0)
    assert wm.ownership_game(lambda *, seed: pair, [*world["unmarked"], world["marked"]], verify=accept_marked, trials=3).outcomes == (1, 1, 1)


def test_the_unforgeability_adversary_plays_on_its_own_copy(world):
    M_hat = world["marked"]
    before = [p.detach().clone() for p in M_hat.parameters()]

    def vandal(vk, M, *, seed):
        assert M is not M_hat
        with torch.no_grad():
            for p in M.parameters():
                p.zero_()
        return world["mk"]

    seen = []
    assert wm.unforgeability_game(vandal, world["vk"], M_hat, verify=lambda mk, vk, M: seen.append(M) or 1).wins == 1
    assert seen == [M_hat] and all(torch.equal(p, q) for p, q in zip(M_hat.parameters(), before))


def test_the_games_reject_bad_input(world):
    mk, vk, M = world["mk"], world["vk"], world["marked"]
    replay = lambda vk_, M_, *, seed: mk  # noqa: E731
    yes = lambda mk_, vk_, M_: 1  # noqa: E731
    for bad in ((), (2,), (1, True), (0.5,)):
        with pytest.raises(ValueError, match="outcomes"):
            wm.GameResult(bad)
    with pytest.raises(ValueError, match="trials"):
        wm.unforgeability_game(replay, vk, M, verify=yes, trials=0)
    with pytest.raises(ValueError, match="VerificationKey"):
        wm.unforgeability_game(replay, mk, M, verify=yes)
    with pytest.raises(ValueError, match="callable"):
        wm.unforgeability_game(replay, vk, M, verify=None)
    short = wm.MarkingKey(wm.Backdoor(mk.T[:3], mk.T_L[:3]), mk.r_t[:3], mk.r_L[:3])
    for out in (short, (mk, vk), None):
        with pytest.raises(ValueError, match="MarkingKey with 50 triggers"):
            wm.unforgeability_game(lambda vk_, M_, *, seed, out=out: out, vk, M, verify=yes)
    with pytest.raises(ValueError, match="0 or 1"):
        wm.unforgeability_game(replay, vk, M, verify=lambda *a: 2)
    pair = lambda *, seed: wm.KeyPair(mk, vk)  # noqa: E731
    with pytest.raises(ValueError, match="at least one model"):
        wm.ownership_game(pair, [], verify=yes)
    with pytest.raises(ValueError, match=r"\(mk, vk\)"):
        wm.ownership_game(lambda *, seed: mk, [M], verify=yes)
    with pytest.raises(ValueError, match=r"\(mk, vk\)"):
        wm.ownership_game(lambda *, seed: (short, vk), [M], verify=yes)
    with pytest.raises(ValueError, match="skip"):
        exwm.verifier(wm.verify, ground_truth=world["f"], epsilon=EPS, skip="step 3")
    with pytest.raises(ValueError, match="larger pool"):
        exwm.DisagreementForger(world["splits"].attacker.x[:20], world["f"])(vk, M)


# --- stamped (BadNets) triggers next to the abstract images ----------------------------------


def test_stamp_trigger_changes_only_the_bottom_right_corner():
    x = torch.rand(5, 64)
    px = wm.stamp_trigger(x, kind="pixel").view(5, 8, 8)
    pt = wm.stamp_trigger(x, kind="pattern").view(5, 8, 8)
    img = x.view(5, 8, 8)
    assert torch.all(px[:, 7, 7] == 1.0) and torch.equal(px.flatten(1)[:, :63], img.flatten(1)[:, :63])
    checker = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert torch.equal(pt[:, 5:, 5:], checker.expand(5, 3, 3))
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[5:, 5:] = False
    assert torch.equal(pt[:, outside], img[:, outside])
    assert torch.equal(x, img.reshape(5, 64))  # the input is not changed
    assert wm.stamp_trigger(torch.rand(2, 3, 8, 8), kind="pixel")[:, :, -1, -1].eq(1.0).all()  # every channel
    with pytest.raises(ValueError, match="kind must be one of"):
        wm.stamp_trigger(x, kind="square")


def test_stamped_backdoor_labels_every_trigger_with_the_target_and_drops_the_target_class():
    gt = lambda x: (x[:, 0] > 0.5).long()  # noqa: E731 - a two-class "ground truth" (the stamp leaves pixel 0 alone)
    x = torch.rand(40, 64)
    b = wm.stamped_backdoor(x, gt, kind="pattern", target=1)
    assert 0 < len(b) < 40 and torch.all(b.T_L == 1)
    assert torch.all(gt(b.T) != b.T_L)  # T_L != f(t): a backdoor's labels are wrong
    with pytest.raises(ValueError, match="no trigger is left"):
        wm.stamped_backdoor(x, lambda x: torch.ones(len(x), dtype=torch.long), kind="pixel", target=1)


def test_a_stamped_backdoor_fires_on_new_inputs_and_an_abstract_one_does_not(world):
    s, f = world["splits"], world["f"]
    owner, test, pool = s.target_train, s.target_test, s.attacker
    rows = {r["trigger"]: r for r in exwm.trigger_kind_table(owner, test, f, MLP(64, 10, hidden=(64,)), stamp_pool=pool, n=30,
                                                              mark=lambda M, mk, d, *, seed: wm.mark(M, mk, d, epochs=40, seed=seed), seed=0)}
    assert set(rows) == {"abstract images", "pixel (BadNets)", "pattern (BadNets)"}
    for r in rows.values():
        assert r["on T"] >= 0.9 and r["test acc"] > 0.85  # every backdoor is learnt, the task kept
    assert rows["pattern (BadNets)"]["on new triggers"] > 0.8  # any stamped digit triggers it
    assert rows["abstract images"]["on new triggers"] < 0.3  # fresh abstract images do not
    assert math.isnan(rows["pattern (BadNets)"]["unmarked on T"])  # no unmarked model passed
