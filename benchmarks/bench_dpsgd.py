"""Batched DP-SGD against sequential Opacus, and the Lab 5 notebook's execution time.

    .venv/bin/python benchmarks/bench_dpsgd.py [--k 16] [--epochs 3] [--repeats 3] [--threads 1] [--no-notebook]

Row 1: train k models of the membership labs' target (Purchase-like, 600 -> 128 -> 100 MLP, 2,000
records each) with DP-SGD at epsilon = 8, delta = 1/n, with Lab 5's recipe
(labkit.experiments.privacy.DPRecipe), two ways:

* sequential: k runs of labkit.privacy.train_dp_opacus (Opacus's PrivacyEngine.make_private_with_epsilon,
  per-sample gradients by Opacus's hooks, Poisson sampling by its DPDataLoader);
* batched: one labkit.dp.fit_batched_dp over a BatchedMLP of k members (per-example norms from
  ||a_i||^2 ||delta_i||^2, no materialised per-example gradients).

Both make the same number of DP-SGD steps per model with the same sigma. Median wall time over
--repeats; speed-up = sequential / batched. Row 2: the Lab 5 solution notebook executed with
nbclient (kernel start included), as a student would run it (not under autograde).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from labkit import dp, privacy
from labkit.experiments.privacy import DPRecipe
from labkit.targets import purchase_target_setting
from labkit.utils import make_generator

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "lab5_defences" / "lab5_defences.ipynb"


def time_batched(setting, recipe, xs, ys, epochs: int, seed: int) -> float:
    model = setting.new_ensemble(xs.shape[0], seed=seed)
    start = time.perf_counter()
    dp.fit_batched_dp(model, xs, ys, epsilon=8.0, max_grad_norm=recipe.max_grad_norm, epochs=epochs, batch_size=recipe.batch_size,
                      lr=recipe.lr, optimizer=recipe.optimizer, seed=seed)
    return time.perf_counter() - start


def time_sequential(setting, recipe, xs, ys, epochs: int, seed: int) -> float:
    start = time.perf_counter()
    for i in range(xs.shape[0]):
        privacy.train_dp_opacus(setting.new_model(seed=seed + i), xs[i], ys[i], epsilon=8.0, max_grad_norm=recipe.max_grad_norm,
                                epochs=epochs, batch_size=recipe.batch_size, lr=recipe.lr, optimizer=recipe.optimizer, seed=seed + i)
    return time.perf_counter() - start


def time_notebook(timeout: int = 900) -> float:
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=16, help="models (the target setting's shadow count)")
    ap.add_argument("--epochs", type=int, default=3, help="DP-SGD epochs per model (Lab 5 uses 30; the ratio barely depends on it)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: as the labs run)")
    ap.add_argument("--no-notebook", action="store_true", help="skip the notebook row")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting, recipe = purchase_target_setting(), DPRecipe()
    data = setting.data()
    n = setting.n_train
    gen = make_generator(0)
    order = torch.stack([torch.randperm(len(data), generator=gen)[:n] for _ in range(args.k)])  # (k, n)
    xs, ys = data.x[order], data.y[order]  # (k, n, d), (k, n): each model its own random records
    q = dp.sample_rate_for(n, recipe.batch_size)
    steps = args.epochs * round(1 / q)
    sigma = dp.noise_multiplier_for(8.0, delta=1 / n, sample_rate=q, steps=steps)
    batched = [time_batched(setting, recipe, xs, ys, args.epochs, seed) for seed in range(args.repeats)]
    sequential = [time_sequential(setting, recipe, xs, ys, args.epochs, seed) for seed in range(args.repeats)]
    b, s = statistics.median(batched), statistics.median(sequential)
    print(f"DP-SGD, epsilon = 8, delta = 1/{n}: sigma = {sigma:.3f}, q = {q:.3f}, {steps} steps per model, "
          f"{args.threads} thread(s), median of {args.repeats}")
    print("| k | epochs | sequential Opacus s | batched labkit s | speed-up |")
    print("|---|---|---|---|---|")
    print(f"| {args.k} | {args.epochs} | {s:.2f} | {b:.2f} | {s / b:.1f} |")
    if not args.no_notebook:
        os.environ.setdefault("LABKIT_PROGRESS", "0")
        seconds = time_notebook()
        print("\n| notebook | execute s | budget s |")
        print("|---|---|---|")
        print(f"| lab5_defences | {seconds:.1f} | 240 |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
