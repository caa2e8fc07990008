"""Shokri et al. (2017) membership inference on Purchase-like data: the lecture's tables, rerun.

Prints, on the shared target setting (``labkit.targets.purchase_target_setting``: 600 binary
features, a 600-128-100 MLP trained on 2,000 records until it fits them):

1. overfitting vs attack success for 2, 10, 20, 50 and 100 classes (the paper's Table II);
2. shadow training data compared: real, noisy (10% / 20% of features flipped), per-class
   marginals, model-based synthesis (the paper's Figure 9);
3. the mitigation table: output policies (top-k, label only, rounding, temperature) and L2
   regularisation (the lecture's table from Section VI);
4. SYNTHESIZE one chain at a time vs batched chains: records per second and queries per record,
   measured side by side in one run;
5. why L2 cannot reach the paper's middle ground here: train and test accuracy of the target
   architecture under L2, with 20 and with 80 training records per class, trained with Adam and
   with SGD (momentum 0.9), each setting on the same records.

    LABKIT_PROGRESS=0 .venv/bin/python benchmarks/bench_membership.py [--k 4] [--threads 1] [--only 1,2,3,4,5]

Sizes are smaller than the paper's (``--k`` shadow models instead of 20, 2,000 training records
instead of 10,000) so that the whole script runs in minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from labkit.experiments.membership import (
    SynthesisConfig,
    make_scenario,
    mitigation_table,
    overfitting_table,
    shadow_data_table,
)
from labkit.membership import synthesize, synthesize_batch
from labkit.models import MLP
from labkit.oracle import Oracle
from labkit.plots import format_table
from labkit.targets import purchase_target_setting
from labkit.train import evaluate, fit
from labkit.utils import make_generator


def synthesis_speed(scenario, cfg: SynthesisConfig, *, sequential_chains: int, batched_chains: int) -> list[dict]:
    """Records per second and queries per record, one chain at a time vs many chains per oracle call."""
    n_classes = scenario.setting.n_classes
    kw = dict(k_max=cfg.k_max, k_min=cfg.k_min, conf_min=cfg.conf_min, rej_max=cfg.rej_max, iter_max=cfg.iter_max, p_one=cfg.p_one)
    rows = []
    api = Oracle(scenario.target)
    gen = make_generator(0)
    start = time.perf_counter()
    found = sum(synthesize(api, c % n_classes, seed=gen, **kw) is not None for c in range(sequential_chains))
    seconds = time.perf_counter() - start
    rows.append({"SYNTHESIZE": "one chain at a time", "chains": sequential_chains, "records": found,
                 "oracle calls": api.queries, "queries/record": api.queries / max(found, 1),
                 "seconds": seconds, "records/s": found / seconds})
    api = Oracle(scenario.target)
    start = time.perf_counter()
    res = synthesize_batch(api, torch.arange(batched_chains) % n_classes, seed=make_generator(1), **kw)
    seconds = time.perf_counter() - start
    rows.append({"SYNTHESIZE": "batched chains", "chains": batched_chains, "records": res.n_records,
                 "oracle calls": res.oracle_calls, "queries/record": res.queries_per_record,
                 "seconds": seconds, "records/s": res.n_records / seconds})
    return rows


def l2_regimes(setting, *, sizes=(2_000, 8_000), lambdas=(0.0, 1e-3, 1e-2, 3e-2)) -> list[dict]:
    """Train/test accuracy under L2 for two training-set sizes and two optimizers (table 5)."""
    data = setting.data()
    test_x, test_y = data.x[-4_000:], data.y[-4_000:]  # never used for training below
    rows = []
    for n in sizes:
        train_x, train_y = data.x[:n], data.y[:n]
        for optimizer, lr in (("adam", setting.lr), ("sgd", 0.1)):
            for lam in lambdas:
                model = MLP(setting.n_features, setting.n_classes, hidden=setting.hidden, seed=0)
                fit(model, train_x, train_y, epochs=setting.epochs, batch_size=setting.batch_size, lr=lr,
                    weight_decay=lam, optimizer=optimizer, seed=0)
                train_acc, test_acc = evaluate(model, train_x, train_y), evaluate(model, test_x, test_y)
                rows.append({"records/class": n // setting.n_classes, "optimizer": f"{optimizer} lr {lr:g}", "lambda": lam,
                             "train acc": train_acc, "test acc": test_acc, "gap": train_acc - test_acc})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, default=4, help="shadow models per attack (default 4)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a shared CPU)")
    ap.add_argument("--only", default="1,2,3,4,5", help="which tables to print, e.g. 1,4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = {int(t) for t in args.only.split(",")}
    setting = purchase_target_setting()
    cfg = SynthesisConfig()
    print(f"setting: {setting}")
    print(f"shadow models k = {args.k}, torch threads = {torch.get_num_threads()}; synthesis: {cfg}\n")
    total = time.perf_counter()

    if 1 in only:
        start = time.perf_counter()
        rows = overfitting_table((2, 10, 20, 50, 100), setting=setting, k=args.k, seed=0)
        print(f"1. Overfitting vs attack success (Shokri et al. Table II: precision 0.505, 0.550, 0.590, 0.860, 0.935) [{time.perf_counter() - start:.0f} s]")
        print(format_table(rows), "\n")

    scenario = None
    if only & {2, 3, 4}:
        start = time.perf_counter()
        scenario = make_scenario(setting, k=args.k, seed=0)
        print(f"scenario (target + {args.k} shadows): train acc {scenario.train_accuracy():.3f}, "
              f"test acc {scenario.test_accuracy():.3f} [{time.perf_counter() - start:.0f} s]\n")

    if 2 in only:
        start = time.perf_counter()
        rows = shadow_data_table(scenario, k=args.k, pool_size=6_000, synthesis=cfg, seed=0)
        for r in rows:
            r["queries/record"] = "-" if math.isnan(r["queries/record"]) else r["queries/record"]
        print(f"2. Shadow training data (Shokri et al. Fig. 9: precision 0.935 real, 0.795 marginal, 0.896 model-based; "
              f"recall 0.994, 0.991, 0.526) [{time.perf_counter() - start:.0f} s]")
        print(format_table(rows), "\n")

    if 3 in only:
        start = time.perf_counter()
        rows = mitigation_table(scenario, l2=(1e-4, 1e-3, 1e-2, 3e-2), seed=0)
        print(f"3. Mitigations (lecture's table: no mitigation 0.92 / 0.87 / 1.00, label 0.66 / 0.60 / 0.99, "
              f"L2 1e-2 0.53 / 0.54 / 0.52 attack acc / precision / recall) [{time.perf_counter() - start:.0f} s]")
        print(format_table(rows), "\n")

    if 4 in only:
        rows = synthesis_speed(scenario, cfg, sequential_chains=100, batched_chains=2_000)
        print("4. SYNTHESIZE, one chain at a time vs batched (the paper reports 156 queries per record on Purchase)")
        print(format_table(rows, floatfmt=".1f"), "\n")

    if 5 in only:
        start = time.perf_counter()
        rows = l2_regimes(setting)
        print(f"5. L2 with 20 vs 80 training records per class (same architecture, epochs and batch size; "
              f"test on 4,000 unseen records) [{time.perf_counter() - start:.0f} s]")
        print(format_table(rows), "\n")
    print(f"total {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
