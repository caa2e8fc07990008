"""Watermarking by backdooring (Adi et al. 2018) on the embedded digits: the lab-scale tables.

    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_watermark.py [--seeds 3] [--unmarked 24]

Prints
1. the analogue of the paper's Table 1 (test and trigger-set accuracy of No-WM, FROMSCRATCH and
   PRETRAINED models; median over seeds, each seed with its own key and initialisations),
2. the false-positive check (Verify on independently trained unmarked models, for every key) and
   the tampered-key check,
3. the unremovability table: fine-tuning (FTLL, FTAL, RTLL, RTAL) on the adversary's held-out data
   and extraction through the prediction API (probabilities or labels), for both marked models.

Setup: digits split (stratified, seed 0) into the owner's training data (1,000), a test set (397)
and the adversary's data (400). The model is an MLP 64-256-10. The ground-truth oracle O^f is an
MLP of the same shape trained once on the owner's data (seed 12345). |T| = 50, epsilon = 0.1.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from labkit import watermark as wm
from labkit.data import load_digits, make_splits
from labkit.experiments.watermark import extraction_attack
from labkit.models import MLP
from labkit.plots import format_table
from labkit.train import evaluate, fit

N_TRIGGERS = 50
EPSILON = 0.1
EPSILON_LOOSE = 0.5  # a looser threshold: still far above what unmarked models reach
HIDDEN = (256,)
EPOCHS = 80  # No-WM training and both marking modes (mark()'s default)


def new_model(seed: int, hidden=HIDDEN) -> MLP:
    return MLP(64, 10, hidden=hidden, seed=seed)


def train_plain(data, seed: int, hidden=HIDDEN, epochs: int = EPOCHS) -> MLP:
    model = new_model(seed, hidden)
    fit(model, data.x, data.y, epochs=epochs, seed=seed)
    return model.eval()


def med(values) -> float:
    return float(statistics.median(values))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds (keys and initialisations) per row")
    ap.add_argument("--unmarked", type=int, default=24, help="independently trained unmarked models")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: one thread is fastest, and the CPU is shared
    start = time.perf_counter()

    splits = make_splits(load_digits(), target_train=1000, target_test=397, attacker=400, seed=0, stratify=True)
    train, test, adv = splits.target_train, splits.target_test, splits.attacker
    f = train_plain(train, 12345)  # the ground-truth oracle O^f
    print(f"ground-truth oracle O^f: test accuracy {evaluate(f, test.x, test.y):.3f}")

    acc: dict[str, list[tuple[float, float]]] = {}
    keys, marked = [], []
    for seed in range(args.seeds):
        mk, vk = wm.keygen(N_TRIGGERS, ground_truth=f, seed=seed)
        keys.append((mk, vk))
        nowm = train_plain(train, seed)
        scratch = wm.mark(new_model(seed), mk, train, mode="fromscratch", epochs=EPOCHS, seed=seed)
        pre = wm.mark(nowm, mk, train, mode="pretrained", seed=seed)
        models = {"No-WM": nowm, "FROMSCRATCH": scratch, "PRETRAINED": pre}
        for name, model in models.items():
            acc.setdefault(name, []).append((evaluate(model, test.x, test.y), wm.trigger_accuracy(model, mk)))
            acc.setdefault(name + " verify", []).append(wm.verify(mk, vk, model, ground_truth=f, epsilon=EPSILON))
        marked.append((seed, mk, vk, scratch, pre))

    print(f"\n## Table 1 analogue (median over {args.seeds} seeds; digits, MLP 64-256-10, |T| = {N_TRIGGERS})\n")
    rows = []
    for name in ("No-WM", "FROMSCRATCH", "PRETRAINED"):
        v = acc[name]
        rows.append({
            "model": name,
            "test acc. (%)": f"{100 * med(a for a, _ in v):.1f}",
            "trigger-set acc. (%)": f"{100 * med(t for _, t in v):.1f}",
            "trigger acc. min-max (%)": f"{100 * min(t for _, t in v):.0f}-{100 * max(t for _, t in v):.0f}",
            f"Verify (eps={EPSILON})": f"{sum(acc[name + ' verify'])}/{len(v)}",
        })
    print(format_table(rows))

    # ---- false positives: independently trained unmarked models, every key
    widths = [(128,), (256,), (128, 64)]
    fp, fp_loose, trig = 0, 0, []
    for j in range(args.unmarked):
        model = train_plain(train, 1000 + j, hidden=widths[j % len(widths)])
        for mk, vk in keys:
            fp += wm.verify(mk, vk, model, ground_truth=f, epsilon=EPSILON)
            fp_loose += wm.verify(mk, vk, model, ground_truth=f, epsilon=EPSILON_LOOSE)
            trig.append(wm.trigger_accuracy(model, mk))
    print(f"\n## False positives\n\nVerify (eps={EPSILON}) accepted {fp} and Verify (eps={EPSILON_LOOSE}) accepted {fp_loose} "
          f"of {args.unmarked * len(keys)} (unmarked model, key) pairs "
          f"({args.unmarked} models: MLP widths {widths}, seeds 1000+, owner's training data); "
          f"their trigger-set accuracy: median {100 * med(trig):.1f}%, max {100 * max(trig):.1f}% "
          f"(Verify needs >= {100 * (1 - EPSILON):.0f}%).")

    # ---- tampered keys (seed 0's FROMSCRATCH model, which verifies)
    seed, mk, vk, scratch, _ = marked[0]
    T_L = mk.T_L.clone()
    T_L[0] = (T_L[0] + 1) % 10
    if int(T_L[0]) == int(wm.ground_truth_labels(f, mk.T[:1])[0]):
        T_L[0] = (T_L[0] + 1) % 10
    T = mk.T.clone()
    T[0, 0] += 1 / 16
    r_t = list(mk.r_t)
    r_t[0] = bytes([r_t[0][0] ^ 1]) + r_t[0][1:]
    f_t0 = wm.ground_truth_labels(f, mk.T[:1])
    T_L_true = mk.T_L.clone()
    T_L_true[0] = f_t0[0]
    tampered = {
        "none (honest key)": mk,
        "one label changed (to another wrong label)": wm.MarkingKey(wm.Backdoor(mk.T, T_L), mk.r_t, mk.r_L),
        "one label set to the ground truth f(t)": wm.MarkingKey(wm.Backdoor(mk.T, T_L_true), mk.r_t, mk.r_L),
        "one nonce changed (1 bit)": wm.MarkingKey(mk.b, r_t, mk.r_L),
        "one trigger pixel changed": wm.MarkingKey(wm.Backdoor(T, mk.T_L), mk.r_t, mk.r_L),
    }
    rows = [{"key": name, "Verify(FROMSCRATCH model)": wm.verify(k, vk, scratch, ground_truth=f, epsilon=EPSILON)} for name, k in tampered.items()]
    print("\n## Tampered keys\n")
    print(format_table(rows))

    # ---- unremovability
    own = [train_plain(adv, 2000 + s) for s in range(args.seeds)]
    own_acc = med(evaluate(m, test.x, test.y) for m in own)
    res: dict[tuple[str, str], list[tuple[float, float, int, int]]] = {}
    for seed, mk, vk, scratch, pre in marked:
        for wname, model in (("FROMSCRATCH", scratch), ("PRETRAINED", pre)):
            attacked = {"none": model}
            for mode in wm.FINE_TUNE_MODES:
                attacked[mode] = wm.fine_tune_attack(model, adv, mode=mode, epochs=20, seed=seed)
            for output in ("probs", "label"):
                attacked[f"extraction ({output})"] = extraction_attack(model, adv.x, new_model(3000 + seed), output=output, seed=seed)
            for attack, m in attacked.items():
                res.setdefault((wname, attack), []).append(
                    (evaluate(m, test.x, test.y), wm.trigger_accuracy(m, mk),
                     wm.verify(mk, vk, m, ground_truth=f, epsilon=EPSILON), wm.verify(mk, vk, m, ground_truth=f, epsilon=EPSILON_LOOSE)))
    print(f"\n## Unremovability (median over {args.seeds} seeds; adversary: 400 held-out labelled digits; "
          f"fine-tuning: Adam lr 1e-3, 20 epochs; extraction: labkit.extraction.train_surrogate on the same 400 inputs)\n")
    rows = []
    for (wname, attack), v in res.items():
        rows.append({
            "marked model": wname,
            "attack": attack,
            "test acc. (%)": f"{100 * med(r[0] for r in v):.1f}",
            "trigger-set acc. (%)": f"{100 * med(r[1] for r in v):.1f}",
            "trigger acc. min-max (%)": f"{100 * min(r[1] for r in v):.0f}-{100 * max(r[1] for r in v):.0f}",
            f"Verify (eps={EPSILON})": f"{sum(r[2] for r in v)}/{len(v)}",
            f"Verify (eps={EPSILON_LOOSE})": f"{sum(r[3] for r in v)}/{len(v)}",
        })
    print(format_table(rows))
    print(f"\nReference: a model the adversary trains on its own 400 records reaches {100 * own_acc:.1f}% test accuracy "
          f"(median of {args.seeds}); an unmarked model's trigger accuracy is ~{100 * med(trig):.0f}%.")
    print(f"\ntotal time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
