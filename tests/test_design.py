"""The design rules of labkit (docs/ARCHITECTURE.md), as fast tests that fail when the design breaks.

* layers: core modules import core modules only; a lecture module imports core modules only
  (never another lecture module); only ``labkit.experiments`` combines them;
* a graded stub in ``solutions/`` has exactly its labkit reference's signature;
* randomness: every random public function takes a keyword-only ``seed`` (the same default, 0),
  the same seed gives the same output, and no call reads or advances torch's global generator;
* private PyTorch APIs (``torch._*``, ``torch.ops``) appear in ``labkit/ensemble.py`` only.
"""
from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LABKIT = ROOT / "labkit"

CORE = {"utils", "data", "models", "train", "ensemble", "targets", "oracle", "metrics", "plots", "grading", "dp"}
LECTURE = {"extraction", "watermark", "inversion", "memorization", "membership.shokri", "membership.synthesis", "membership.lira", "privacy"}
PACKAGES = {"membership", "experiments"}  # __init__ files: re-exports only


def _module_name(path: Path) -> str:
    rel = path.relative_to(LABKIT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _labkit_imports(path: Path) -> set[str]:
    """The labkit modules ``path`` imports (relative imports resolved), as names like ``metrics``."""
    tree = ast.parse(path.read_text())
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("labkit"):
                mod = node.module[len("labkit"):].lstrip(".")
            else:
                continue
            if mod in PACKAGES or mod == "":  # `from . import x` / `from ..membership import y`
                out |= {f"{mod}.{a.name}".lstrip(".") for a in node.names}
            out.add(mod)
        elif isinstance(node, ast.Import):
            out |= {a.name[len("labkit."):] for a in node.names if a.name.startswith("labkit.")}
    return {m for m in out if m}


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LABKIT.rglob("*.py"))}


def test_every_labkit_module_has_a_layer():
    for name in _modules():
        if name == "":
            continue  # labkit/__init__.py
        assert name in CORE | LECTURE | PACKAGES or name.startswith("experiments"), f"labkit.{name} is in no layer of tests/test_design.py"


@pytest.mark.parametrize("name", sorted(CORE | LECTURE))
def test_imports_point_down_only(name):
    """Core imports core; a lecture module imports core only (not another lecture module, not experiments)."""
    path = _modules()[name]
    imported = {m for m in _labkit_imports(path) if m in CORE | LECTURE or m.startswith(("experiments", "membership"))}
    bad = {m for m in imported if m not in CORE}
    assert not bad, f"labkit.{name} ({'core' if name in CORE else 'lecture'} module) imports {sorted(bad)}; it may import core modules only"


def test_the_import_rule_catches_a_violation(tmp_path, monkeypatch):
    """The checker itself, on a fake labkit: a lecture module importing a sibling is reported."""
    fake = tmp_path / "labkit"
    (fake / "membership").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "membership" / "__init__.py").write_text("")
    (fake / "utils.py").write_text("")
    (fake / "membership" / "shokri.py").write_text("from ..utils import x\nfrom .lira import TargetSetting\n")
    (fake / "extraction.py").write_text("from labkit import watermark\nimport labkit.membership.lira\n")
    monkeypatch.setattr(sys.modules[__name__], "LABKIT", fake)
    assert _labkit_imports(fake / "membership" / "shokri.py") == {"utils", "membership.lira"}
    assert {"watermark", "membership.lira"} <= _labkit_imports(fake / "extraction.py")
    with pytest.raises(AssertionError, match="membership.lira"):
        test_imports_point_down_only("membership.shokri")


# ------------------------------------------------------------------------------ graded stubs
def _graded_defs():
    """(lab, function node) for every top-level def in a graded solution cell of solutions/."""
    for nb_path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        nb = json.loads(nb_path.read_text())
        for cell in nb["cells"]:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell["cell_type"] == "code" and meta.get("solution"):
                for node in ast.parse("".join(cell["source"])).body:
                    if isinstance(node, ast.FunctionDef):
                        yield nb_path.parent.name, node


def _reference_defs() -> dict[str, list[tuple[str, ast.FunctionDef]]]:
    refs: dict[str, list] = {}
    for name, path in _modules().items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                refs.setdefault(node.name, []).append((name, node))
    return refs


def _signature(node: ast.FunctionDef) -> str:
    """Names, kinds, order and defaults of the parameters (annotations are optional in a stub)."""
    args = ast.parse(f"def f({ast.unparse(node.args)}): pass").body[0].args
    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if a is not None:
            a.annotation = None
    return f"({ast.unparse(args)})"


GRADED = sorted({(lab, node.name) for lab, node in _graded_defs()})


def test_the_labs_have_graded_stubs():
    assert len(GRADED) >= 25, GRADED


@pytest.mark.parametrize("lab,fn", GRADED)
def test_graded_stub_has_its_references_signature(lab, fn):
    stub = next(node for lb, node in _graded_defs() if (lb, node.name) == (lab, fn))
    refs = _reference_defs().get(fn, [])
    assert len(refs) == 1, f"{lab}: graded function {fn} must have exactly one labkit reference, found {[m for m, _ in refs]}"
    module, ref = refs[0]
    assert _signature(stub) == _signature(ref), f"{lab}: {fn}{_signature(stub)} differs from labkit.{module}.{fn}{_signature(ref)}"


# ------------------------------------------------------------------------------ randomness
def _public_functions():
    import importlib

    for name in sorted(_modules()):
        mod = importlib.import_module(f"labkit.{name}" if name else "labkit")
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{name}.{attr}", obj
            elif inspect.isclass(obj):
                yield f"{name}.{attr}", obj.__init__
                for m_name, m in vars(obj).items():
                    if inspect.isfunction(m) and not m_name.startswith("_"):
                        yield f"{name}.{attr}.{m_name}", m


EXEMPT = {"utils.make_generator", "utils.init_from_seed"}  # the converters themselves take seed positionally


def test_randomness_has_one_spelling():
    """No parameter named generator/rng/random_state; every seed is keyword-only with default 0."""
    seen = 0
    for qual, fn in _public_functions():
        params = inspect.signature(fn).parameters
        for bad in ("generator", "rng", "random_state", "gen"):
            assert bad not in params, f"labkit.{qual} takes {bad!r}; labkit spells randomness `seed`"
        if "seed" in params and qual not in EXEMPT:
            seen += 1
            p = params["seed"]
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, f"labkit.{qual}: seed must be keyword-only"
            assert p.default == 0, f"labkit.{qual}: seed must default to 0 (got {p.default!r})"
            assert "Generator" in str(p.annotation) and "None" in str(p.annotation), f"labkit.{qual}: seed must be int | torch.Generator | None"
    assert seen >= 30


def _random_calls():
    """One small call of every public random function, by name: name -> function of the seed."""
    from labkit import (  # noqa: F401
        data,
        ensemble,
        experiments,
        extraction,
        inversion,
        memorization,
        metrics,
        models,
        oracle,
        targets,
        train,
        utils,
        watermark,
    )
    from labkit.experiments import membership as exm
    from labkit.experiments import memorization as exmem
    from labkit.experiments import watermark as exwm
    from labkit import privacy
    from labkit.membership import lira, shokri, synthesis

    digits = data.load_digits()
    small = digits.subset(torch.arange(120))
    xs, ys = small.x, small.y
    purchase = data.make_purchase(200, n_features=20, n_classes=4, seed=0)
    tiny_setting = targets.TargetSetting(n_samples=400, n_features=20, n_classes=4, n_train=40, hidden=(8,), epochs=2)
    vocab = memorization.Vocab()
    lm = memorization.CharLM(len(vocab), hidden=8, seed=0)
    tiny_lm = memorization.LMConfig(hidden=8, seq_len=8, batch_size=4, steps=2)
    tiny_extraction = dict(n_canaries=1, insertions=1, n_sentences=10, fillers=2, n_samples=6, length=8, config=tiny_lm, reference_config=tiny_lm)
    victim = models.LogisticRegression(20, 4, seed=0)
    api = oracle.Oracle(victim)
    digit_model = models.LogisticRegression(64, 10, seed=0)
    wm_pair = watermark.keygen(6, ground_truth=digit_model, n_classes=10, seed=0)
    binary_victim = models.LogisticRegression(3, 2, seed=0)
    return {
        "data.make_purchase": lambda s: data.make_purchase(50, n_features=10, n_classes=3, seed=s).x,
        "data.make_splits": lambda s: data.make_splits(small, target_train=30, target_test=30, seed=s).target_train.y,
        "models.MLP": lambda s: models.MLP(5, 3, hidden=(4,), seed=s).net[0].weight,
        "models.SmallCNN": lambda s: models.SmallCNN((1, 8, 8), 3, width=2, seed=s).head.weight,
        "models.LogisticRegression": lambda s: models.LogisticRegression(5, 3, seed=s).linear.weight,
        "ensemble.BatchedMLP": lambda s: ensemble.BatchedMLP(2, 5, 3, hidden=(4,), seed=s).weights[0],
        "ensemble.fit_batched": lambda s: ensemble.fit_batched(ensemble.BatchedMLP(2, 64, 10, hidden=(4,)), xs, ys, epochs=1, seed=s).losses,
        "train.fit": lambda s: train.fit(models.MLP(64, 10, hidden=(4,)), xs, ys, epochs=1, seed=s).losses[0],
        "train.fit (dropout)": lambda s: _trained(train.fit, models.MLP(64, 10, hidden=(4,), dropout=0.5), xs, ys, epochs=1, seed=s),
        "utils.reset_parameters_": lambda s: utils.reset_parameters_(models.MLP(5, 3, hidden=(4,)), seed=s).net[0].weight,
        "targets.TargetSetting.new_model": lambda s: tiny_setting.new_model(seed=s).net[0].weight,
        "targets.TargetSetting.new_ensemble": lambda s: tiny_setting.new_ensemble(2, seed=s).weights[0],
        "targets.train_models_like_target": lambda s: targets.train_models_like_target([purchase.subset(torch.arange(40))], setting=tiny_setting, seed=s)[0].net[0].weight,
        "metrics.membership_set": lambda s: metrics.membership_set(small.subset(torch.arange(20)), small.subset(torch.arange(20, 40)), seed=s).y,
        "extraction.make_fidelity_toy": lambda s: extraction.make_fidelity_toy(seed=s).x,
        "extraction.logreg_queries": lambda s: extraction.logreg_queries(5, (3,), seed=s),
        "extraction.solve_logreg": lambda s: extraction.solve_logreg(oracle.Oracle(binary_victim), seed=s).weight,
        "extraction.train_surrogate": lambda s: extraction.train_surrogate(oracle.Oracle(victim), purchase.x[:30], models.LogisticRegression(20, 4), n_queries=20, epochs=1, seed=s).model.linear.weight,
        "extraction.budget_sweep": lambda s: torch.tensor([r["fidelity"] for r in extraction.budget_sweep(victim, purchase.x[:40], lambda: models.LogisticRegression(20, 4), purchase.x[40:60], purchase.y[40:60], budgets=[10], outputs=("probs",), epochs=1, seed=s)]),
        "watermark.abstract_images": lambda s: watermark.abstract_images(3, seed=s),
        "watermark.sample_backdoor": lambda s: watermark.sample_backdoor(3, digit_model, n_classes=10, seed=s).T,
        "watermark.keygen": lambda s: watermark.keygen(3, ground_truth=digit_model, n_classes=10, seed=s).mk.b.T,
        "watermark.mixed_batches": lambda s: watermark.mixed_batches(xs, ys, wm_pair.mk.b, batch_size=40, k=2, seed=s)[0][1],
        "watermark.reinitialize_": lambda s: watermark.reinitialize_(models.MLP(5, 3, hidden=(4,)), seed=s).net[0].weight,
        "watermark.mark": lambda s: watermark.mark(models.MLP(64, 10, hidden=(4,)), wm_pair.mk, small, epochs=1, seed=s).net[0].weight,
        "watermark.fine_tune_attack": lambda s: watermark.fine_tune_attack(models.MLP(64, 10, hidden=(4,)), small, mode="RTLL", epochs=1, seed=s).net[-1].weight,
        "watermark.unforgeability_game": lambda s: torch.tensor(watermark.unforgeability_game(
            lambda vk, M, *, seed: _coin_key(wm_pair.mk, seed), wm_pair.vk, digit_model, verify=_first_label, trials=20, seed=s).outcomes),
        "watermark.ownership_game": lambda s: torch.tensor(watermark.ownership_game(
            lambda *, seed: (_coin_key(wm_pair.mk, seed), wm_pair.vk), [digit_model], verify=_first_label, trials=20, seed=s).outcomes),
        "memorization.make_canary": lambda s: torch.tensor([int(c) for c in memorization.make_canary(seed=s).secret]),
        "memorization.make_corpus": lambda s: torch.tensor([ord(c) for c in memorization.make_corpus(5, seed=s)]),
        "memorization.CharLM": lambda s: memorization.CharLM(len(vocab), hidden=8, seed=s).head.weight,
        "memorization.train_lm": lambda s: torch.tensor(memorization.train_lm(memorization.CharLM(len(vocab), hidden=8), "the cat sees the dog. " * 4, vocab, steps=2, seed=s)),
        "memorization.generate": lambda s: torch.tensor([ord(c) for c in memorization.generate(lm, vocab, "my", n_chars=8, greedy=False, seed=s)]),
        "memorization.sample_generations": lambda s: torch.tensor([ord(c) for c in "|".join(memorization.sample_generations(lm, vocab, 6, length=8, seed=s))]),
        "experiments.memorization.extraction_scenario": lambda s: torch.tensor([ord(c) for c in "|".join(exmem.extraction_scenario(**tiny_extraction, seed=s).generations)]),
        "experiments.memorization.extraction_experiment": lambda s: torch.tensor([ord(c) for c in "|".join(exmem.extraction_experiment(**tiny_extraction, seed=s).ranking.texts)]),
        "membership.synthesis.rand_record": lambda s: synthesis.rand_record(12, seed=s),
        "membership.synthesis.synthesize": lambda s: _synthesized(synthesis, oracle.Oracle(victim), s),
        "membership.synthesis.synthesize_batch": lambda s: synthesis.synthesize_batch(api, torch.tensor([0, 1]), k_max=4, conf_min=0.0, rej_max=2, iter_max=3, seed=s).x,
        "membership.synthesis.marginal_synthesis": lambda s: synthesis.marginal_synthesis(purchase, 10, seed=s).x,
        "membership.synthesis.noisy_data": lambda s: synthesis.noisy_data(purchase, fraction=0.2, seed=s).x,
        "membership.lira.random_halves": lambda s: lira.random_halves(10, 4, seed=s),
        "membership.lira.train_on_halves": lambda s: lira.train_on_halves(purchase.x[:40], purchase.y[:40], lira.random_halves(40, 2, seed=0), setting=tiny_setting, seed=s)[0].weights[0],
        "membership.shokri.shadow_splits": lambda s: shokri.shadow_splits(purchase, k=2, n_train=30, seed=s)[1][1].x,
        "membership.shokri.train_shadow_models": lambda s: shokri.train_shadow_models(purchase, k=1, setting=tiny_setting, seed=s).models[0].net[0].weight,
        "membership.shokri.train_attack_models": lambda s: shokri.train_attack_models(shokri.AttackSet(torch.softmax(torch.arange(24.0).view(6, 4), 1), torch.tensor([0, 0, 1, 1, 0, 1]), torch.tensor([True, False] * 3)), hidden=(3,), epochs=2, seed=s).models[0].net[0].weight,
        "membership.shokri.attack_through": lambda s: shokri.attack_through(
            api.policy, api._model, shokri.train_shadow_models(purchase, k=1, setting=tiny_setting, n_train=40, seed=0),
            purchase.x[:20], purchase.y[:20], train=lambda a, seed: shokri.train_attack_models(a, hidden=(3,), epochs=2, seed=seed), seed=s),
        "membership.shokri.shokri_attack": lambda s: shokri.shokri_attack(api, purchase, k=1, setting=tiny_setting, n_train=40, hidden=(3,), seed=s).attack.models[0].net[0].weight,
        "experiments.membership.make_scenario": lambda s: exm.make_scenario(tiny_setting, k=1, seed=s).target.net[0].weight,
        "experiments.membership.Scenario.evaluation_set": lambda s: _scenario(exm, tiny_setting).evaluation_set(n=10, seed=s).y,
        "experiments.membership.attack_scenario": lambda s: torch.tensor(exm.attack_scenario(_scenario(exm, tiny_setting), n_eval=20, seed=s).auc),
        "experiments.membership.overfitting_table": None,  # minutes: covered by tests/test_membership_shokri.py and the book
        "experiments.membership.shadow_data_table": None,
        "experiments.membership.mitigation_table": None,
        "experiments.membership.ForestModel": lambda s: exm.ForestModel(20, 4, n_estimators=3, seed=s).fit(purchase)(purchase.x[:20]),
        "experiments.membership.model_family_table": lambda s: torch.tensor([r["AUC"] for r in exm.model_family_table(tiny_setting, families=("random forest",), k=1, n_estimators=3, seed=s)]),
        "experiments.membership.dataset_table": None,  # a scenario per dataset: tests/test_membership_experiments.py
        "experiments.membership.per_class_precision_table": None,
        "experiments.membership.shadow_count_table": None,
        "experiments.membership.data_vs_l2_table": lambda s: torch.tensor([[r["train acc"], r["test acc"]] for r in exm.data_vs_l2_table(tiny_setting, sizes=(40, 80, 160), l2=(0.0, 1e-2), n_test=200, seed=s)]),
        "experiments.memorization.canary_experiment": None,
        "dp.fit_batched_dp": lambda s: _dp_fit(s),
        "privacy.dp_sgd_step": lambda s: privacy.dp_sgd_step(models.MLP(20, 4, hidden=(4,), seed=0), purchase.x[:8], purchase.y[:8], lr=0.1, max_grad_norm=1.0, noise_multiplier=1.0, seed=s).grads[0],
        "privacy.train_dp_opacus": lambda s: privacy.train_dp_opacus(models.MLP(20, 4, hidden=(4,), seed=0), purchase.x[:64], purchase.y[:64], epsilon=4.0, epochs=1, batch_size=16, seed=s).model.net[0].weight,
        "privacy.label_only_scores": lambda s: privacy.label_only_scores(api, purchase.x[:20], purchase.y[:20], r=3, n_copies=4, seed=s).scores,
        "experiments.privacy.privacy_tradeoff": None,  # minutes: the book and Lab 5 run it
        "experiments.watermark.security_games_table": lambda s: torch.tensor([r["v"].outcomes for r in exwm.security_games_table(
            wm_pair.vk, digit_model, [digit_model], verifiers={"v": _first_label}, unforgers={"a": lambda vk, M, *, seed: _coin_key(wm_pair.mk, seed)},
            owners={"b": lambda *, seed: (_coin_key(wm_pair.mk, seed), wm_pair.vk)}, trials=20, seed=s)]),
        "experiments.watermark.trigger_kind_table": lambda s: torch.tensor([[r["|T|"], r["test acc"], r["on T"], r["on new triggers"]] for r in exwm.trigger_kind_table(
            small.subset(torch.arange(40)), small.subset(torch.arange(40, 80)), digit_model, models.MLP(64, 10, hidden=(4,)), stamp_pool=small.subset(torch.arange(80, 120)), n=4,
            mark=lambda M, mk, d, *, seed: watermark.mark(M, mk, d, epochs=2, seed=seed), seed=s)]),
        "experiments.watermark.extraction_attack": lambda s: exwm.extraction_attack(victim, purchase.x[:30], models.LogisticRegression(20, 4), epochs=1, seed=s).linear.weight,
    }


_SCENARIO = {}


def _coin_key(mk, gen):
    """``mk`` with a coin from ``gen`` as its first trigger label (a seeded adversary for the game probes)."""
    from labkit import watermark

    T_L = mk.T_L.clone()
    T_L[0] = int(torch.randint(0, 2, (1,), generator=gen))
    return watermark.MarkingKey(watermark.Backdoor(mk.T, T_L), mk.r_t, mk.r_L)


def _first_label(mk, vk, M):
    """A verifier that accepts when the first trigger label is 1."""
    return int(mk.T_L[0])


def _dp_fit(s):
    from labkit import data, dp, ensemble

    purchase = data.make_purchase(64, n_features=10, n_classes=3, seed=0)
    model = ensemble.BatchedMLP(2, 10, 3, hidden=(4,), seed=0)
    dp.fit_batched_dp(model, purchase.x, purchase.y, epsilon=4.0, epochs=1, batch_size=16, seed=s)
    return model.weights[0]


def _trained(fit, model, *args, **kwargs):
    fit(model, *args, **kwargs)
    return model.net[0].weight


def _synthesized(synthesis, api, s):
    """A record SYNTHESIZE finds for the class the victim prefers on the zero record (so it succeeds)."""
    target = int(api(torch.zeros(1, 20)).argmax())
    x = synthesis.synthesize(api, target, k_max=6, conf_min=0.0, rej_max=3, iter_max=200, seed=s)
    assert x is not None, "the probe must synthesize a record"
    return x


def _scenario(exm, setting):
    if "sc" not in _SCENARIO:
        _SCENARIO["sc"] = exm.make_scenario(setting, k=1, seed=0)
    return _SCENARIO["sc"]


@pytest.fixture(scope="module")
def random_calls():
    return _random_calls()


def test_the_table_lists_every_random_function(random_calls):
    takes_seed = {q for q, fn in _public_functions() if "seed" in inspect.signature(fn).parameters and q not in EXEMPT}
    takes_seed = {q[: -len(".__init__")] if q.endswith(".__init__") else q for q in takes_seed}
    assert takes_seed == {k.split(" (")[0] for k in random_calls}, f"missing from the table: {sorted(takes_seed - set(random_calls))}; not random: {sorted(set(random_calls) - takes_seed)}"


def _as_tensor(out):
    return out.detach().cpu() if isinstance(out, torch.Tensor) else torch.as_tensor(out)


def test_random_functions_follow_their_seed_and_leave_global_state_alone(random_calls):
    for name, call in sorted(random_calls.items()):
        if call is None:
            continue
        state = torch.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        a, b = _as_tensor(call(5)), _as_tensor(call(5))
        c = _as_tensor(call(6))
        g1, g2 = _as_tensor(call(torch.Generator().manual_seed(9))), _as_tensor(call(torch.Generator().manual_seed(9)))
        assert torch.equal(torch.get_rng_state(), state), f"labkit.{name} read or advanced torch's global generator"
        if torch.cuda.is_available():
            assert all(torch.equal(x, y) for x, y in zip(torch.cuda.get_rng_state_all(), cuda_state)), f"labkit.{name} advanced a CUDA generator"
        assert torch.equal(a, b), f"labkit.{name}: the same seed gave different outputs"
        assert torch.equal(g1, g2), f"labkit.{name}: two generators with the same seed gave different outputs"
        if name not in SEED_INSENSITIVE:
            assert not (a.shape == c.shape and torch.equal(a, c)), f"labkit.{name}: seeds 5 and 6 gave the same output"


# functions whose probe output does not depend on the seed on these tiny inputs
SEED_INSENSITIVE = {"extraction.solve_logreg", "experiments.membership.attack_scenario"}  # exact solve; AUC on 20 records


# ------------------------------------------------------------------------------ private torch
def _private_torch_uses(path: Path) -> list[str]:
    """``torch.<...>._x`` attribute chains (also through ``from torch import nn`` / ``import
    torch.nn.functional as F`` aliases), ``torch.ops``, ``getattr(torch..., "_x")`` and imports of
    private torch modules or names."""
    tree = ast.parse(path.read_text())
    roots = {"torch"}
    for node in ast.walk(tree):  # names bound to torch or one of its modules
        if isinstance(node, ast.Import):
            roots |= {a.asname for a in node.names if a.asname and a.name.startswith("torch")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
            roots |= {a.asname or a.name for a in node.names}

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    hits = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Attribute):
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in roots and (any(private(a) for a in chain) or "ops" in chain):
                hits.append(f"{where}: {cur.id}.{'.'.join(reversed(chain))}")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and private(arg.value) and getattr(node.args[0], "id", None) in roots:
                hits.append(f"{where}: getattr(..., {arg.value!r})")
        elif isinstance(node, ast.Import):
            hits += [f"{where}: import {a.name}" for a in node.names if a.name.startswith("torch") and any(private(p) for p in a.name.split("."))]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
            if any(private(p) for p in node.module.split(".")) or any(private(a.name) for a in node.names):
                hits.append(f"{where}: from {node.module} import ...")
    seen, out = set(), []
    for h in hits:  # one report per line (torch.ops.aten.x holds three matching attribute nodes)
        if h.split(": ")[0] not in seen:
            seen.add(h.split(": ")[0])
            out.append(h)
    return out


def test_the_private_torch_checker_sees_the_usual_spellings(tmp_path, monkeypatch):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch\nimport torch.nn.functional as F\nfrom torch import nn\nfrom torch._C import x\n"
                     "import torch._dynamo\ntorch.nn._reduction\nF._canonical_mask\nnn.modules.dropout._DropoutNd\n"
                     "torch.ops.aten.relu\ngetattr(torch, '_fused_adam_')\ntorch.nn.functional.relu\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    hits = _private_torch_uses(probe)
    assert len(hits) == 7, hits  # lines 4-10; not the last, public line


RANDOM_OPS = {"rand", "randn", "randint", "randperm", "multinomial", "bernoulli", "normal", "poisson",
              "rand_like", "randn_like", "randint_like", "uniform_", "normal_", "random_", "exponential_",
              "bernoulli_", "cauchy_", "geometric_", "log_normal_"}


def test_every_torch_random_call_in_labkit_passes_a_generator():
    """A torch draw without ``generator=`` would read torch's global generator."""
    bad = []
    for path in sorted(LABKIT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RANDOM_OPS:
                if not any(k.arg == "generator" for k in node.keywords):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert not bad, "torch random calls without generator=:\n" + "\n".join(bad)


def test_private_torch_calls_live_in_the_ensemble_module_only():
    hits = [h for p in sorted(LABKIT.rglob("*.py")) if p.name != "ensemble.py" for h in _private_torch_uses(p)]
    assert not hits, "private PyTorch APIs outside labkit/ensemble.py:\n" + "\n".join(hits)
    assert _private_torch_uses(LABKIT / "ensemble.py"), "the checker must see the ensemble's private calls"
