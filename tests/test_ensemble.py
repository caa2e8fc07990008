"""Batched ensembles: BatchedMLP, fit_batched, predict_proba_batched.

The central property: training k members at once is the same as training k separate MLPs
from the same initial weights on the same batches.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from labkit.data import make_purchase
from labkit.ensemble import BatchedMLP, fit_batched, predict_proba_batched
from labkit.models import MLP
from labkit.train import evaluate, fit, predict_proba


def _separate_adam(models, x, y, perms, *, batch_size, lr, weight_decay):
    """Reference: k plain MLPs, each with its own torch Adam, on the given per-epoch orders."""
    for i, m in enumerate(models):
        opt = torch.optim.Adam(m.parameters(), lr=lr, weight_decay=weight_decay)
        for perm in perms:
            xe, ye = x[i][perm[i]], y[i][perm[i]]
            for s in range(0, x.shape[1], batch_size):
                loss = F.cross_entropy(m(xe[s : s + batch_size]), ye[s : s + batch_size])
                opt.zero_grad()
                loss.backward()
                opt.step()


def _documented_orders(k, n, epochs, seed):
    """The shuffling rule stated in fit_batched's docstring."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(k, n, generator=gen).argsort(dim=1) for _ in range(epochs)]


def _toy(k=3, n=70, d=12, c=5, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(k, n, d, generator=gen, dtype=dtype)
    y = torch.randint(0, c, (k, n), generator=gen)
    return x, y


def test_forward_matches_members_and_shared_inputs():
    m = BatchedMLP(4, 12, 5, hidden=(16, 8), activation="tanh", seed=1)
    x, _ = _toy(k=4, n=9)
    out = m(x)  # (4, 9, 5)
    assert out.shape == (4, 9, 5)
    for i in range(4):
        assert torch.allclose(m.member(i)(x[i]), out[i], atol=1e-6)
    shared = m(x[0])  # (B, d) broadcast to every member
    assert torch.allclose(shared, m(x[0].expand(4, -1, -1)), atol=1e-6)
    assert not torch.allclose(shared[0], shared[1])  # members differ


def test_from_models_round_trip():
    m = BatchedMLP(3, 12, 5, hidden=(7,), seed=4)
    back = BatchedMLP.from_models([m.member(i) for i in range(3)])
    for w1, w2 in zip(list(m.weights) + list(m.biases), list(back.weights) + list(back.biases)):
        assert torch.equal(w1, w2)
    assert (back.k, back.input_shape, back.n_classes, back.activation) == (3, (12,), 5, "relu")
    with pytest.raises(ValueError, match="same architecture"):
        BatchedMLP.from_models([MLP(12, 5, hidden=(7,)), MLP(12, 5, hidden=(8,))])
    with pytest.raises(ValueError, match="dropout"):
        BatchedMLP.from_models([MLP(12, 5, dropout=0.5)])


def test_init_like_nn_linear_and_seeded():
    m = BatchedMLP(8, 400, 10, hidden=(300,), seed=0)
    for w, b, fan_in in zip(m.weights, m.biases, (400, 300)):
        bound = 1 / math.sqrt(fan_in)
        assert w.abs().max() <= bound and b.abs().max() <= bound
        # uniform on (-bound, bound): variance bound^2 / 3, as nn.Linear's kaiming_uniform(a=sqrt(5))
        assert abs(w.var().item() / (bound**2 / 3) - 1) < 0.02
        assert abs(w.mean().item()) < 0.01 * bound
    lin = torch.nn.Linear(400, 300)
    assert abs(lin.weight.var().item() / m.weights[0].var().item() - 1) < 0.02
    same = BatchedMLP(8, 400, 10, hidden=(300,), seed=0)
    other = BatchedMLP(8, 400, 10, hidden=(300,), seed=1)
    assert torch.equal(m.weights[0], same.weights[0])
    assert not torch.equal(m.weights[0], other.weights[0])


@pytest.mark.parametrize("activation,weight_decay", [("relu", 0.0), ("tanh", 1e-2)])
def test_fit_batched_equals_separate_models_float64(activation, weight_decay):
    k, n, bs, epochs = 3, 70, 16, 3  # 70 = 4 * 16 + 6: a ragged last batch
    x, y = _toy(k=k, n=n, dtype=torch.float64)
    ens = BatchedMLP(k, 12, 5, hidden=(16, 8), activation=activation, seed=2).double()
    separate = [ens.member(i) for i in range(k)]
    fit_batched(ens, x, y, epochs=epochs, batch_size=bs, lr=1e-2, weight_decay=weight_decay, seed=7)
    _separate_adam(separate, x, y, _documented_orders(k, n, epochs, 7), batch_size=bs, lr=1e-2, weight_decay=weight_decay)
    # Adam divides by sqrt(v): rounding differences between bmm and mm (1e-16) on near-zero
    # gradients grow to about 1e-8 after 15 steps; a wrong gradient would be off by about lr.
    for i in range(k):
        for p_batched, p_alone in zip(ens.member(i).parameters(), separate[i].parameters()):
            assert torch.allclose(p_batched, p_alone, atol=1e-6, rtol=0)
    # and the training moved the weights (the comparison is not between two untrained models)
    fresh = BatchedMLP(k, 12, 5, hidden=(16, 8), activation=activation, seed=2).double()
    assert (ens.weights[0] - fresh.weights[0]).abs().max() > 1e-2


def test_fit_batched_equals_separate_models_float32_purchase():
    data = make_purchase(1200, n_classes=10, strength=0.7, seed=3)
    k, n, bs, epochs = 4, 300, 32, 4
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(1200, generator=gen)[:n] for _ in range(k)])
    x, y = data.x[idx], data.y[idx]
    ens = BatchedMLP(k, 600, 10, hidden=(64,), seed=5)
    separate = [ens.member(i) for i in range(k)]
    fit_batched(ens, x, y, epochs=epochs, batch_size=bs, lr=1e-3, seed=11)
    _separate_adam(separate, x, y, _documented_orders(k, n, epochs, 11), batch_size=bs, lr=1e-3, weight_decay=0.0)
    probe = data.x[:200]
    out = ens(probe)
    for i in range(k):
        assert torch.allclose(out[i], separate[i](probe), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fused", [True, False])
def test_stacked_adam_equals_torch_adam(fused):
    from labkit import ensemble

    # private_ops=False is the public path taken where torch has no fused kernel: it must agree too
    gen = torch.Generator().manual_seed(0)
    ours = [torch.randn(4, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True), torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    initial = [p.detach().clone() for p in ours]
    opt_ours = ensemble._StackedAdam(ours, lr=3e-2, weight_decay=1e-2, private_ops=fused)
    opt_ref = torch.optim.Adam(ref, lr=3e-2, weight_decay=1e-2)
    assert (opt_ours._fused is not None) == fused
    for _ in range(6):
        for a, b in zip(ours, ref):
            a.grad = torch.randn(a.shape, generator=gen, dtype=a.dtype)
            b.grad = a.grad.clone()
        opt_ours.step()
        opt_ref.step()
    for a, b, a0 in zip(ours, ref, initial):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
        assert (a - a0).abs().max() > 1e-2  # the steps moved the parameters
    # a parameter without a gradient is skipped, as torch.optim.Adam skips it (no step counted)
    ours[1].grad, ref[1].grad = None, None
    before = ours[1].detach().clone()
    ours[0].grad = torch.randn(ours[0].shape, generator=gen, dtype=torch.float64)
    ref[0].grad = ours[0].grad.clone()
    opt_ours.step()
    opt_ref.step()
    assert torch.equal(ours[1], before)
    assert torch.allclose(ours[0], ref[0], atol=1e-12, rtol=0)


def test_autograd_path_equals_hand_written_gradients():
    class Wrapped(BatchedMLP):  # not exactly BatchedMLP: fit_batched takes the autograd path
        pass

    x, y = _toy(k=3, n=50, dtype=torch.float64)
    a = BatchedMLP(3, 12, 5, hidden=(10,), activation="tanh", seed=3).double()
    b = Wrapped(3, 12, 5, hidden=(10,), activation="tanh", seed=3).double()
    ra = fit_batched(a, x, y, epochs=2, batch_size=8, lr=1e-2, weight_decay=1e-3, seed=1)
    rb = fit_batched(b, x, y, epochs=2, batch_size=8, lr=1e-2, weight_decay=1e-3, seed=1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-10, rtol=0)
    assert torch.allclose(ra.losses, rb.losses, atol=1e-10)


def test_report_losses_and_accuracy():
    x, y = _toy(k=3, n=64)
    ens = BatchedMLP(3, 12, 5, hidden=(64,), seed=0)
    with torch.no_grad():
        initial = F.cross_entropy(ens(x).flatten(0, 1), y.flatten(), reduction="none").view(3, -1).mean(1)
    report = fit_batched(ens, x, y, epochs=40, batch_size=64, lr=1e-2, seed=0, shuffle=False)
    assert report.losses.shape == (40, 3) and report.train_accuracy.shape == (3,)
    # one full batch per epoch and no shuffling: epoch 0's loss is the loss of the initial weights
    assert torch.allclose(report.losses[0], initial.double(), atol=1e-5)
    assert (report.losses[-1] < 0.3 * report.losses[0]).all()
    for i in range(3):
        assert report.train_accuracy[i].item() == pytest.approx(evaluate(ens.member(i), x[i], y[i]))
    assert (report.train_accuracy > 0.9).all()  # 64 random points, 64 hidden units: memorised


def test_seed_controls_shuffling():
    x, y = _toy(k=2, n=40)
    runs = []
    for seed in (0, 0, 1):
        ens = BatchedMLP(2, 12, 5, hidden=(8,), seed=0)
        fit_batched(ens, x, y, epochs=2, batch_size=8, lr=1e-2, seed=seed)
        runs.append(ens.weights[0].detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])


def test_shared_training_set_broadcasts():
    x, y = _toy(k=1, n=40)
    ens = BatchedMLP(3, 12, 5, hidden=(8,), seed=0)
    fit_batched(ens, x[0], y[0], epochs=2, batch_size=8, lr=1e-2, seed=0)  # (n, d) and (n,)
    twin = BatchedMLP(3, 12, 5, hidden=(8,), seed=0)
    fit_batched(twin, x[0].expand(3, -1, -1), y[0].expand(3, -1), epochs=2, batch_size=8, lr=1e-2, seed=0)
    assert torch.equal(ens.weights[0], twin.weights[0])


def test_batched_accuracy_matches_separate_training_within_noise():
    """Members trained at once generalise like models trained one by one with labkit.train.fit."""
    data = make_purchase(2400, n_classes=10, strength=0.6, seed=0)
    train, test = data.subset(torch.arange(400)), data.subset(torch.arange(400, 2400))
    k = 4
    ens = BatchedMLP(k, 600, 10, hidden=(32,), seed=0)
    fit_batched(ens, train.x, train.y, epochs=6, batch_size=50, lr=2e-3, seed=0)
    acc_batched = (predict_proba_batched(ens, test.x).argmax(2) == test.y).double().mean(1)
    acc_alone = []
    for i in range(k):
        m = BatchedMLP(1, 600, 10, hidden=(32,), seed=100 + i).member(0)
        fit(m, train.x, train.y, epochs=6, batch_size=50, lr=2e-3, seed=i)
        acc_alone.append(evaluate(m, test.x, test.y))
    acc_alone = torch.tensor(acc_alone, dtype=torch.float64)
    assert acc_batched.min() > 0.5  # they learned something (10 classes: chance is 0.1)
    assert abs(acc_batched.mean() - acc_alone.mean()) < 0.04


def test_predict_proba_batched():
    ens = BatchedMLP(3, 12, 5, hidden=(8,), seed=0)
    x, _ = _toy(k=3, n=10)
    p = predict_proba_batched(ens, x[0], batch_size=4)  # chunks of 4
    assert p.shape == (3, 10, 5) and p.dtype == torch.float32
    for i in range(3):
        assert torch.allclose(p[i], predict_proba(ens.member(i), x[0]), atol=1e-6)
    per_member = predict_proba_batched(ens, x)
    assert torch.allclose(per_member[1], predict_proba(ens.member(1), x[1]), atol=1e-6)


def test_bad_input():
    ens = BatchedMLP(3, 12, 5, seed=0)
    x, y = _toy(k=3, n=10)
    with pytest.raises(ValueError, match=r"\(3, B, 12\)"):
        ens(torch.zeros(2, 10, 12))
    with pytest.raises(ValueError, match="x must have shape"):
        fit_batched(ens, x[:2], y[:2], epochs=1, batch_size=4, lr=1e-3)
    with pytest.raises(ValueError, match="y must have shape"):
        fit_batched(ens, x, y[:, :5], epochs=1, batch_size=4, lr=1e-3)
    with pytest.raises(ValueError, match=r"labels in \[0, 4\]"):
        fit_batched(ens, x, y + 5, epochs=1, batch_size=4, lr=1e-3)
    bad = x.clone()
    bad[1, 3, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        fit_batched(ens, bad, y, epochs=1, batch_size=4, lr=1e-3)
    huge = torch.full_like(x, 3e37)  # its sum overflows float32, yet every entry is finite: accepted
    fit_batched(BatchedMLP(3, 12, 5, seed=0), huge, y, epochs=1, batch_size=10, lr=1e-3)
    with pytest.raises(ValueError, match="batched ensemble"):
        fit_batched(MLP(12, 5), x, y, epochs=1, batch_size=4, lr=1e-3)
    with pytest.raises(ValueError, match="k must be"):
        BatchedMLP(0, 12, 5)
    with pytest.raises(ValueError, match="member index"):
        ens.member(3)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_fit_batched_public_path_equals_private_path(activation):
    """private_ops=False (public Adam and ReLU backward, what a torch without the private kernels gets) trains the same members."""
    data = make_purchase(300, n_features=20, n_classes=4, seed=0)
    runs = []
    for private in (True, False):
        ens = BatchedMLP(3, 20, 4, hidden=(8,), activation=activation, seed=1)
        report = fit_batched(ens, data.x, data.y, epochs=3, batch_size=32, lr=1e-2, weight_decay=1e-3, seed=2, private_ops=private)
        runs.append((ens, report))
    (a, ra), (b, rb) = runs
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5, rtol=0)
    assert torch.allclose(ra.losses, rb.losses, atol=1e-6)
