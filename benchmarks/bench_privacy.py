"""Privacy risks (lab 3): model inversion with MI-FACE and canary exposure of a character LM.

Prints two tables:

1. MI-FACE on 8x8 digits for an overfit and a regularized MLP: the target-class confidence of
   each inverted class and how many inversions lie nearer their own class mean than any other
   (Fredrikson et al. 2015, Algorithm 1; 300 training digits, PROCESS = clip to [0, 1]).
2. Exposure of a k-digit canary inserted r = 0, 1, 4, 16 times into a synthetic corpus, and
   whether beam search extracts it (Carlini et al. 2019), for several seeds.

Usage: ``LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_privacy.py [--seeds 0 1 2] [--k 5]``
"""
from __future__ import annotations

import argparse
import time

import torch

from labkit.data import load_digits, make_splits
from labkit.experiments.memorization import canary_experiment
from labkit.inversion import (
    class_means,
    clip_to_range,
    invert_classes,
    reconstruction_score,
)
from labkit.memorization import LMConfig
from labkit.metrics import generalization_gap
from labkit.models import MLP
from labkit.plots import format_table
from labkit.train import evaluate, fit, predict_proba

# name -> (weight decay, epochs): same MLP (one hidden layer of 256), same data, same seed
MODELS = {"overfit": (0.0, 200), "regularized": (1e-2, 60)}


def train_digit_model(train, *, weight_decay: float, epochs: int, seed: int) -> MLP:
    gen = torch.Generator().manual_seed(seed)
    model = MLP(64, 10, hidden=(256,))
    with torch.no_grad():  # initial weights from the seed, without touching the global RNG
        for p in model.parameters():
            bound = 1.0 / p.shape[-1] ** 0.5
            p.uniform_(-bound, bound, generator=gen)
    fit(model, train.x, train.y, epochs=epochs, lr=3e-3, weight_decay=weight_decay, seed=seed)
    return model


def bench_inversion(seeds: list[int]) -> None:
    data = load_digits()
    summary = []
    for seed in seeds:
        splits = make_splits(data, target_train=300, target_test=500, seed=seed, stratify=True)
        train, test = splits.target_train, splits.target_test
        means = class_means(train.x, train.y, n_classes=10)
        for name, (wd, epochs) in MODELS.items():
            model = train_digit_model(train, weight_decay=wd, epochs=epochs, seed=seed)
            gap = generalization_gap(predict_proba(model, train.x), train.y, predict_proba(model, test.x), test.y)
            t0 = time.perf_counter()
            results = invert_classes(model, alpha=2000, beta=50, gamma=0.01, lam=1.0, process=clip_to_range())
            seconds = time.perf_counter() - t0
            x_inv = torch.stack([r.x for r in results])
            score = reconstruction_score(x_inv, torch.arange(10), f_target=model, means=means)
            if seed == seeds[0]:
                print(f"\nMI-FACE per class, {name} model, seed {seed}:")
                rows = [row | {"steps": r.n_steps, "stop": r.stop} for row, r in zip(score.rows(), results)]
                print(format_table(rows))
            summary.append({
                "seed": seed,
                "model": name,
                "train acc": evaluate(model, train.x, train.y),
                "test acc": evaluate(model, test.x, test.y),
                "conf. gap": gap.confidence_gap,
                "min conf.": score.min_confidence,
                "nearer own mean": f"{score.n_nearer_own}/10",
                "mean own dist.": float(score.own_distance.mean()),
                "steps": sum(r.n_steps for r in results),
                "seconds": seconds,
            })
    print("\nMI-FACE summary (alpha=2000, beta=50, gamma=0.01, lambda=1, PROCESS=clip):")
    print(format_table(summary))


def bench_exposure(seeds: list[int], k: int) -> None:
    config = LMConfig()
    rows = []
    for seed in seeds:
        t0 = time.perf_counter()
        results = canary_experiment((0, 1, 4, 16), k=k, config=config, seed=seed)
        seconds = (time.perf_counter() - t0) / len(results)
        for r in results:
            rows.append({
                "seed": seed,
                "r": r.canary.insertions,
                "exposure (bits)": r.exposure,
                "max": r.max_exposure,
                "rank": r.rank,
                "secret": r.canary.secret,
                "extracted": r.extracted,
                "extracted ok": r.extracted_ok,
                "train loss": r.train_loss,
                "s/model": seconds,
            })
    print(f"\nCanary exposure, k={k} digits ({10**k} candidates), GRU {config.hidden} units, {config.steps} steps:")
    print(format_table(rows, floatfmt=".2f"))
    print("\nMean exposure over seeds:")
    print(format_table([
        {"r": r, "mean exposure": sum(x["exposure (bits)"] for x in rows if x["r"] == r) / len(seeds),
         "extracted": f"{sum(x['extracted ok'] for x in rows if x['r'] == r)}/{len(seeds)}"}
        for r in (0, 1, 4, 16)
    ], floatfmt=".2f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--k", type=int, default=5, help="digits in the canary's secret")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (tiny models: 1 is fastest)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    bench_inversion(args.seeds)
    bench_exposure(args.seeds, args.k)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
