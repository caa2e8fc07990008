"""Metric membership attacks and LiRA (labkit.membership.lira)."""
import math

import pytest
import torch

from labkit.ensemble import predict_proba_batched
from labkit.membership import lira
from labkit.membership.lira import (
    confidence_score,
    entropy_score,
    fit_lira_gaussians,
    gaussian_log_pdf,
    lira_offline,
    lira_online,
    logit_scale,
    logit_scale_from_logits,
    loss_score,
    random_halves,
    shadow_logit_scores,
    train_on_halves,
)
from labkit.metrics import roc_auc, tpr_at_fpr
from labkit.targets import TargetSetting, purchase_target_setting

# A tiny overfitting setting: 10 classes, 100 features, 200 training records per model.
TINY = TargetSetting(n_samples=1000, n_features=100, n_classes=10, strength=0.8, n_train=200, hidden=(32,), epochs=20, batch_size=20, lr=3e-3)


# ---------------------------------------------------------------- metric attacks
def test_metric_scores_by_hand():
    probs = torch.tensor([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [0.0, 1.0, 0.0]])
    y = torch.tensor([0, 2, 1])
    assert torch.allclose(loss_score(probs, y), torch.log(torch.tensor([0.7, 1 / 3, 1.0], dtype=torch.float64)))
    assert torch.allclose(confidence_score(probs), torch.tensor([0.7, 1 / 3, 1.0], dtype=torch.float64))
    ent = entropy_score(probs)
    expected0 = (0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)) / math.log(3)
    assert ent[0].item() == pytest.approx(expected0)
    assert ent[1].item() == pytest.approx(-1.0)  # uniform: maximal uncertainty
    assert ent[2].item() == 0.0  # one-hot: certain (0 log 0 counts as 0)
    # the loss attack uses the label: a confident wrong answer scores low
    assert loss_score(torch.tensor([[0.99, 0.01]]), torch.tensor([1])).item() < math.log(0.5)


def test_metric_scores_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        confidence_score(torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="non-negative"):
        entropy_score(torch.tensor([[1.5, -0.5]]))
    with pytest.raises(ValueError, match="labels"):
        loss_score(torch.tensor([[0.5, 0.5]]), torch.tensor([2]))


# ---------------------------------------------------------------- logit scaling
def test_logit_scale_two_ways_and_stable():
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(50, 7, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 7, (50,), generator=gen)
    p = torch.softmax(logits, dim=1)
    p_y = p[torch.arange(50), y]
    naive = torch.log(p_y / (1 - p_y))  # fine for moderate p
    assert torch.allclose(logit_scale(p, y), naive, atol=1e-9)
    assert torch.allclose(logit_scale_from_logits(logits, y), naive, atol=1e-9)
    # near p_y = 1 the naive form breaks (1 - p_y rounds to 0) but phi stays exact and ordered
    confident = torch.tensor([[40.0, 0.0, 0.0], [50.0, 0.0, 0.0]], dtype=torch.float64)
    yc = torch.tensor([0, 0])
    pc = torch.softmax(confident, dim=1)
    assert (1 - pc[:, 0] == 0).all()
    phi = logit_scale(pc, yc)
    exact = torch.tensor([40 - math.log(2), 50 - math.log(2)], dtype=torch.float64)
    assert torch.allclose(phi, exact, atol=1e-9)
    assert torch.allclose(logit_scale_from_logits(confident, yc), exact, atol=1e-12)


# ---------------------------------------------------------------- Gaussians
def test_gaussian_log_pdf_second_way():
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    mu, sigma = torch.tensor(0.7, dtype=torch.float64), torch.tensor(1.9, dtype=torch.float64)
    ref = torch.distributions.Normal(mu, sigma).log_prob(x)
    assert torch.allclose(gaussian_log_pdf(x, mu, sigma), ref, atol=1e-12)
    # and it integrates to one (trapezoid over +-8 sigma)
    grid = torch.linspace(mu - 8 * sigma, mu + 8 * sigma, 4001, dtype=torch.float64)
    assert torch.trapezoid(gaussian_log_pdf(grid, mu, sigma).exp(), grid).item() == pytest.approx(1.0, abs=1e-6)


def test_fit_lira_gaussians_recovers_parameters():
    gen = torch.Generator().manual_seed(1)
    k, n = 400, 30
    mask = random_halves(n, k, seed=2)
    mu_in, mu_out = torch.linspace(2, 6, n, dtype=torch.float64), torch.linspace(-1, 1, n, dtype=torch.float64)
    s_in, s_out = torch.linspace(0.5, 1.5, n, dtype=torch.float64), torch.full((n,), 2.0, dtype=torch.float64)
    noise = torch.randn(k, n, generator=gen, dtype=torch.float64)
    phi = torch.where(mask, mu_in + s_in * noise, mu_out + s_out * noise)
    g = fit_lira_gaussians(phi, mask)
    assert (g.n_in == k // 2).all() and (g.n_out == k // 2).all()
    # 200 draws per side: standard errors sigma/sqrt(200) for mu, sigma/sqrt(400) for sigma
    assert torch.allclose(g.mu_in, mu_in, atol=5 * 1.5 / math.sqrt(200))
    assert torch.allclose(g.mu_out, mu_out, atol=5 * 2.0 / math.sqrt(200))
    assert torch.allclose(g.sigma_in, s_in, rtol=0.25)
    assert torch.allclose(g.sigma_out, s_out, rtol=0.25)
    pooled = fit_lira_gaussians(phi, mask, global_variance=True)
    assert torch.allclose(pooled.mu_in, g.mu_in)
    expected_in = math.sqrt((s_in**2).mean().item())  # pooled spread of the "in" sides
    assert pooled.sigma_in.unique().numel() == 1
    assert pooled.sigma_in[0].item() == pytest.approx(expected_in, rel=0.05)


def test_single_shadow_borrows_pooled_sigma_and_empty_side_is_nan():
    phi = torch.tensor([[1.0, 5.0], [3.0, 7.0], [2.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    g = fit_lira_gaussians(phi, mask)
    assert g.mu_in.tolist() == [2.0, 5.0]
    assert g.sigma_in[0].item() == pytest.approx(math.sqrt(2.0))  # std of {1, 3}
    assert g.sigma_in[1].item() == pytest.approx(math.sqrt(2.0))  # one shadow: borrowed
    assert g.mu_out.tolist() == [2.0, 3.5]
    assert g.sigma_out[1].item() == pytest.approx(math.sqrt(24.5))  # std of {7, 0}
    assert g.sigma_out[0].item() == pytest.approx(math.sqrt(24.5))  # one shadow: borrowed
    mask_no_out = torch.ones(3, 2, dtype=torch.bool)
    g2 = fit_lira_gaussians(phi, mask_no_out)
    assert torch.isnan(g2.mu_out).all()
    with pytest.raises(ValueError, match="'out' shadow"):
        lira_online(torch.zeros(2), g2)


def test_online_and_offline_scores():
    g = lira.LiraGaussians(
        mu_in=torch.tensor([3.0, 3.0, 0.0], dtype=torch.float64),
        sigma_in=torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64),
        mu_out=torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64),
        sigma_out=torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64),
        n_in=torch.tensor([8, 8, 8]),
        n_out=torch.tensor([8, 8, 8]),
    )
    phi = torch.tensor([1.5, 4.0, 0.3], dtype=torch.float64)
    online = lira_online(phi, g)
    # equal variances: the log ratio is linear, (mu_in - mu_out)(phi - (mu_in + mu_out)/2) / sigma^2
    assert online[0].item() == pytest.approx(0.0, abs=1e-12)  # halfway between the means
    assert online[1].item() == pytest.approx(3 * (4.0 - 1.5))
    assert online[2].item() == 0.0  # identical in and out Gaussians: no evidence
    offline = lira_offline(phi, g)
    # -log Pr[Z >= phi] with Z ~ N(0, 1), a second way via erfc
    second = [-math.log(0.5 * math.erfc(v / math.sqrt(2))) for v in (1.5, 4.0, 0.15)]
    assert torch.allclose(offline, torch.tensor(second, dtype=torch.float64), atol=1e-10)
    # far in the tail 1 - Phi(z) underflows in float64 but the score keeps ranking
    far = lira_offline(torch.tensor([40.0, 45.0, 50.0], dtype=torch.float64), g)
    assert torch.isfinite(far).all() and far[0] < far[1]


def test_random_halves_balanced_and_seeded():
    m = random_halves(10, 6, seed=3)
    assert m.shape == (6, 10) and m.dtype == torch.bool
    assert (m.sum(dim=1) == 5).all()  # every model trains on exactly half
    assert (m.sum(dim=0) == 3).all()  # every example is "in" for exactly k/2 models
    assert torch.equal(m[0], ~m[1]) and torch.equal(m[4], ~m[5])
    assert torch.equal(m, random_halves(10, 6, seed=3))
    assert not torch.equal(m, random_halves(10, 6, seed=4))
    with pytest.raises(ValueError, match="even"):
        random_halves(9, 2)


# ---------------------------------------------------------------- end to end, tiny setting
@pytest.fixture(scope="module")
def tiny_game():
    """17 models on random halves of a 400-record pool: model 0 is the target, 16 shadows."""
    data = TINY.data()
    pool = data.subset(torch.arange(400))
    mask = random_halves(400, 17, seed=0)
    model, report = train_on_halves(pool.x, pool.y, mask, setting=TINY, seed=0)
    phi = shadow_logit_scores(model, pool.x, pool.y)  # (17, 400)
    probs = predict_proba_batched(model, pool.x)[0]  # the target's outputs (400, 10)
    test = data.subset(torch.arange(400, 1000))
    test_acc = (predict_proba_batched(model, test.x)[0].argmax(1) == test.y).double().mean().item()
    return dict(pool=pool, mask=mask, report=report, phi=phi, probs=probs, test_acc=test_acc)


def test_lira_beats_chance_and_the_loss_attack(tiny_game):
    g = tiny_game
    assert g["report"].train_accuracy.min() > 0.9 and g["test_acc"] < 0.7  # the target overfits
    is_member = g["mask"][0]
    # phi from the released probabilities equals phi from the logits (what the shadows used)
    assert torch.allclose(logit_scale(g["probs"], g["pool"].y), g["phi"][0], atol=1e-3)
    gauss = fit_lira_gaussians(g["phi"][1:], g["mask"][1:], global_variance=True)
    online = lira_online(g["phi"][0], gauss)
    offline = lira_offline(g["phi"][0], gauss)
    loss = loss_score(g["probs"], g["pool"].y)
    auc_online, auc_offline, auc_loss = roc_auc(online, is_member), roc_auc(offline, is_member), roc_auc(loss, is_member)
    assert auc_online > 0.9 and auc_offline > 0.85 and auc_loss > 0.7
    assert auc_online > auc_loss + 0.03
    assert tpr_at_fpr(online, is_member, fpr=0.01) > 0.3  # 200 non-members: 1% FPR allows 2 errors
    assert tpr_at_fpr(online, is_member, fpr=0.01) > tpr_at_fpr(loss, is_member, fpr=0.01) + 0.1


def test_lira_ablations(tiny_game):
    g = tiny_game
    is_member = g["mask"][0]
    gauss = fit_lira_gaussians(g["phi"][1:], g["mask"][1:], global_variance=True)
    online = lira_online(g["phi"][0], gauss)
    # a membership truth unrelated to the target: chance
    shuffled = is_member[torch.randperm(400, generator=torch.Generator().manual_seed(5))]
    assert abs(roc_auc(online, shuffled) - 0.5) < 0.1
    # non-members only: the offline p-values Pr[Z >= phi] are roughly uniform (the "out"
    # Gaussian describes them), so about 10% fall below 0.1; members pile up near 0
    p_value = torch.exp(-lira_offline(g["phi"][0], gauss))
    assert 0.03 < (p_value[~is_member] < 0.1).double().mean().item() < 0.2
    assert (p_value[is_member] < 0.1).double().mean().item() > 0.5
    # non-members get negative log likelihood ratios on average, members positive ones
    assert online[~is_member].median() < 0 < online[is_member].median()
    # swapping the in/out labels of the shadows turns the test around
    swapped = fit_lira_gaussians(g["phi"][1:], ~g["mask"][1:], global_variance=True)
    assert roc_auc(lira_online(g["phi"][0], swapped), is_member) < 0.1


def test_train_on_halves_is_deterministic():
    small = TargetSetting(n_samples=200, n_features=20, n_classes=3, strength=1.0, n_train=40, hidden=(8,), epochs=2, batch_size=10)
    data = small.data().subset(torch.arange(80))
    mask = random_halves(80, 2, seed=0)
    runs = [shadow_logit_scores(train_on_halves(data.x, data.y, mask, setting=small, seed=s)[0], data.x, data.y) for s in (0, 0, 1)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    with pytest.raises(ValueError, match="same positive number"):
        train_on_halves(data.x, data.y, torch.tensor([[True] * 80, [False] * 80]), setting=small)


def test_purchase_setting_fields():
    s = purchase_target_setting()
    assert (s.n_features, s.n_classes, s.hidden) == (600, 100, (128,))
    a, b = s.new_model(seed=3), s.new_model(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.slow
def test_purchase_setting_headline_numbers():
    """The shared target overfits (train >= 0.99, test 0.6-0.75) and LiRA reaches AUC >= 0.92."""
    s = purchase_target_setting()
    data = s.data()
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    pool = data.subset(perm[: 2 * s.n_train])
    test = data.subset(perm[2 * s.n_train : 2 * s.n_train + 2000])
    mask = random_halves(2 * s.n_train, 17, seed=0)
    model, report = train_on_halves(pool.x, pool.y, mask, setting=s, seed=0)
    test_acc = (predict_proba_batched(model, test.x).argmax(2) == test.y).double().mean(1)
    assert report.train_accuracy.min() >= 0.99
    assert 0.6 <= test_acc.min() and test_acc.max() <= 0.75
    phi = shadow_logit_scores(model, pool.x, pool.y)
    gauss = fit_lira_gaussians(phi[1:], mask[1:], global_variance=True)
    online = lira_online(phi[0], gauss)
    assert roc_auc(online, mask[0]) >= 0.92
    assert tpr_at_fpr(online, mask[0], fpr=0.001) >= 0.10  # 2000 non-members: 2 false positives allowed
