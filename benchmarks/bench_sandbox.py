"""What the grading sandbox costs: `nbgrader autograde` of one submission with and without bubblewrap and its limits.

    .venv/bin/python benchmarks/bench_sandbox.py [--lab LAB] [--repeats N]

A throwaway course (coursetools/nbgrading.py) holds one submission (the solution) of LAB (default:
the fixture course's tiny "demo" lab, so that the fixed cost of a kernel start dominates; pass a
real lab such as lab4b_lira for a realistic one). Each repeat grades it three times, in a rotating
order: sandboxed with its resource limits (coursetools/sandbox.py, the default), sandboxed without
them (`--SandboxKernelManager.enforce_limits=False`), and with MLSEC_SANDBOX=off; the table shows
the medians and their ratios, measured side by side in one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from coursetools import nbgrading, sandbox

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "course"


MODES = ("limits", "no limits", "no sandbox")


def grade_once(course: Path, lab: str, *, mode: str) -> float:
    env = {"MLSEC_SANDBOX": "off" if mode == "no sandbox" else "bwrap"}
    extra = ["--SandboxKernelManager.enforce_limits=False"] if mode == "no limits" else []
    start = time.perf_counter()
    proc = nbgrading.run_nbgrader(course, "autograde", lab, "--force", "--student=alice", *extra,
                                  timeout=1800, check=False, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"autograde failed ({mode}):\n{proc.stdout[-2000:]}")
    score = nbgrading.read_scores(course, lab, "alice")
    if score.auto_score != score.max_auto_score:
        raise SystemExit(f"the solution scored {score.auto_score}/{score.max_auto_score} ({mode})")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default="demo", help="lab to grade (default: the fixture course's demo lab)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    sandbox.check_available()
    source = FIXTURE if args.lab == "demo" else ROOT
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        course = nbgrading.make_course(Path(tmp) / "course", [args.lab], source=source)
        nbgrading.generate_assignment(course, args.lab)  # puts the lab in the gradebook
        nbgrading.submit(course, "alice", args.lab, source / "solutions" / args.lab / f"{args.lab}.ipynb")
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(args.repeats):
            for mode in MODES[i % 3:] + MODES[:i % 3]:
                times[mode].append(grade_once(course, args.lab, mode=mode))
    med = {mode: statistics.median(ts) for mode, ts in times.items()}
    print(f"autograde of one {args.lab} submission, median of {args.repeats} (rotating order)\n")
    print(nbgrading.format_table(
        ("lab", "limits s", "no limits s", "no sandbox s", "limits / no limits", "sandbox+limits / no sandbox"),
        [(args.lab, round(med["limits"], 2), round(med["no limits"], 2), round(med["no sandbox"], 2),
          round(med["limits"] / med["no limits"], 3), round(med["limits"] / med["no sandbox"], 3))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
