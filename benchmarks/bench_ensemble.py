"""Batched ensemble vs a sequential loop: wall-clock time to train k identical MLPs.

Every variant trains the same k models (600 -> 128 -> 100 ReLU MLPs, the membership labs' target
architecture) on the same Purchase-like data, with the same epochs, batch size and Adam, and ends
by computing every model's training accuracy (what ``fit`` and ``fit_batched`` report):

* seq autograd: the fastest ordinary PyTorch loop we could write. Each ``nn.Module`` model is
  trained in turn; each epoch gathers its shuffled data once and takes contiguous slices; Adam is
  torch's ``fused`` or ``foreach`` implementation (both are timed, the faster counts); no
  ``.item()`` per step.
* seq hand-written: the batched code's own step (hand-written backward, fused Adam called
  directly, no autograd), run for one model at a time (``fit_batched`` on a one-member
  ``BatchedMLP``). It isolates what batching buys from what dropping autograd buys.
* batched: ``labkit.ensemble.fit_batched`` on a ``labkit.ensemble.BatchedMLP`` (one batched forward
  and backward per step for all k members).

Each variant is timed with every torch thread count in ``--threads`` (default 1 and 2), because
the best count depends on the machine: on an idle 2-core CPU two threads help, on a CPU shared
with other jobs they can make small matrix products many times slower. Repeats are interleaved
(every variant once, then again, ...) so that a change in machine load hits all variants; the
table gives medians, each variant at its best thread count, and the ratios of the two
sequential loops' times to the batched time.

    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_ensemble.py
    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_ensemble.py --k 4 16 --batch-sizes 32 512 --threads 2 --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from labkit.ensemble import BatchedMLP, fit_batched
from labkit.plots import format_table
from labkit.targets import purchase_target_setting


def sequential(models, x, y, *, epochs, batch_size, lr, adam, seed=0):
    """Train each model alone: pre-shuffled contiguous batches, fused/foreach Adam, no sync per step."""
    n = x.shape[1]
    accuracies = []
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
        model.eval()
        with torch.no_grad():  # the final train accuracy, as fit() and fit_batched() report it
            accuracies.append((model(x[i]).argmax(dim=1) == y[i]).double().mean())
    return torch.stack(accuracies)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[16], help="ensemble sizes")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 512])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    args = ap.parse_args()

    setting = purchase_target_setting()
    data = setting.data()
    n, lr = setting.n_train, setting.lr
    sides = ("fused", "foreach", "hand", "batched")
    variants = [(side, t) for t in args.threads for side in sides]
    rows = []
    for k in args.k:
        gen = torch.Generator().manual_seed(k)
        idx = torch.stack([torch.randperm(len(data), generator=gen)[:n] for _ in range(k)])  # (k, n)
        x, y = data.x[idx], data.y[idx]  # each model its own training set
        for bs in args.batch_sizes:
            times = {v: [] for v in variants}
            for rep in range(args.repeats + 1):  # the first round warms up and is dropped
                for side, threads in variants:
                    torch.set_num_threads(threads)
                    ens = setting.new_ensemble(k, seed=rep)
                    t0 = time.perf_counter()
                    if side == "batched":
                        fit_batched(ens, x, y, epochs=args.epochs, batch_size=bs, lr=lr, seed=rep)
                    elif side == "hand":
                        for i in range(k):
                            one = BatchedMLP.from_models([ens.member(i)])
                            fit_batched(one, x[i : i + 1], y[i : i + 1], epochs=args.epochs, batch_size=bs, lr=lr, seed=rep + i)
                    else:
                        models = [ens.member(i) for i in range(k)]
                        sequential(models, x, y, epochs=args.epochs, batch_size=bs, lr=lr, adam=side, seed=rep)
                    if rep:
                        times[(side, threads)].append(time.perf_counter() - t0)
            med = {v: statistics.median(t) for v, t in times.items()}

            def best(*names):
                return min((med[(side, t)], t) for side in names for t in args.threads)

            (auto, auto_t), (hand, hand_t), (bat, bat_t) = best("fused", "foreach"), best("hand"), best("batched")
            row = {"k": k, "batch size": bs, "seq autograd s": auto, "seq hand-written s": hand, "batched s": bat,
                   "threads (auto/hand/batched)": f"{auto_t}/{hand_t}/{bat_t}",
                   "autograd / batched": auto / bat, "hand-written / batched": hand / bat}
            rows.append(row)
            print("  ".join(f"{key}={val:.3f}" if isinstance(val, float) else f"{key}={val}" for key, val in row.items()), flush=True)
    print()
    print(f"torch {torch.__version__}; n = {n} records per model, {args.epochs} epoch(s) per run; medians of "
          f"{args.repeats} interleaved repeats; each variant at its best thread count of {args.threads}; "
          "seq autograd = faster of fused and foreach Adam")
    print(format_table(rows, floatfmt=".2f"))

if __name__ == "__main__":
    main()
