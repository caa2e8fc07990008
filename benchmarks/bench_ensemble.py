"""Batched ensemble vs a sequential loop: wall-clock time to train k identical MLPs.

Both sides train the same k models (600 -> 128 -> 100 ReLU MLPs, the membership labs' target
architecture) on the same Purchase-like data, with the same epochs, batch size and Adam:

* sequential: the fastest plain loop we could write. Each model is trained in turn; each epoch
  gathers its shuffled data once and takes contiguous slices; Adam is torch's ``fused`` (or
  ``foreach``, both are timed and the faster is the baseline); no ``.item()`` per step.
* batched: ``labkit.train.fit_batched`` on a ``labkit.models.BatchedMLP`` (one batched forward
  and backward per step for all k members).

Repeats are interleaved (sequential, batched, sequential, ...) so that a change in machine load
hits both sides; the table gives medians.

    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_ensemble.py
    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_ensemble.py --k 4 16 --batch-sizes 32 64 128 512 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from labkit.membership.lira import purchase_target_setting
from labkit.models import BatchedMLP
from labkit.plots import format_table
from labkit.train import fit_batched


def sequential(models, x, y, *, epochs, batch_size, lr, adam, seed=0):
    """Train each model alone: pre-shuffled contiguous batches, fused/foreach Adam, no sync per step."""
    n = x.shape[1]
    for i, model in enumerate(models):
        opt = torch.optim.Adam(model.parameters(), lr=lr, **{adam: True})
        gen = torch.Generator().manual_seed(seed + i)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            xe, ye = x[i][perm], y[i][perm]  # one gather per epoch
            for s in range(0, n, batch_size):
                loss = F.cross_entropy(model(xe[s : s + batch_size]), ye[s : s + batch_size])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[16], help="ensemble sizes")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 512])
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    setting = purchase_target_setting()
    data = setting.data()
    n = setting.n_train
    lr = setting.lr
    rows = []
    for k in args.k:
        gen = torch.Generator().manual_seed(k)
        idx = torch.stack([torch.randperm(len(data), generator=gen)[:n] for _ in range(k)])  # (k, n)
        x, y = data.x[idx], data.y[idx]  # each model its own training set
        for bs in args.batch_sizes:
            times = {"fused": [], "foreach": [], "batched": []}
            for rep in range(args.repeats + 1):  # the first round warms up and is dropped
                for side in ("fused", "batched", "foreach"):
                    ens = setting.new_ensemble(k, seed=rep)
                    t0 = time.perf_counter()
                    if side == "batched":
                        fit_batched(ens, x, y, epochs=args.epochs, batch_size=bs, lr=lr, seed=rep)
                    else:
                        models = [ens.member(i) for i in range(k)]
                        sequential(models, x, y, epochs=args.epochs, batch_size=bs, lr=lr, adam=side, seed=rep)
                    if rep:
                        times[side].append(time.perf_counter() - t0)
            med = {side: statistics.median(t) for side, t in times.items()}
            best_seq = min(med["fused"], med["foreach"])
            rows.append({
                "k": k, "batch size": bs, "n per model": n, "epochs": args.epochs,
                "seq fused s": med["fused"], "seq foreach s": med["foreach"],
                "batched s": med["batched"], "ratio (best seq / batched)": best_seq / med["batched"],
            })
            print(f"k={k} bs={bs}: seq fused {med['fused']:.2f}s, foreach {med['foreach']:.2f}s, batched {med['batched']:.2f}s", flush=True)
    print()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeats} interleaved repeats")
    print(format_table(rows, floatfmt=".2f"))


if __name__ == "__main__":
    main()
