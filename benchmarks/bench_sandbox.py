"""What the grading sandbox costs: `nbgrader autograde` of one submission with and without bubblewrap.

    .venv/bin/python benchmarks/bench_sandbox.py [--lab LAB] [--repeats N]

A throwaway course (coursetools/nbgrading.py) holds one submission (the solution) of LAB (default:
the fixture course's tiny "demo" lab, so that the fixed cost of a kernel start dominates; pass a
real lab such as lab4b_lira for a realistic one). Each repeat grades it once sandboxed
(coursetools/sandbox.py) and once with MLSEC_SANDBOX=off, in alternating order, and the table
shows the medians and their ratio, measured side by side in one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from coursetools import nbgrading, sandbox

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "course"


def grade_once(course: Path, lab: str, *, sandboxed: bool) -> float:
    env_before = os.environ.get("MLSEC_SANDBOX")
    os.environ["MLSEC_SANDBOX"] = "bwrap" if sandboxed else "off"
    try:
        start = time.perf_counter()
        proc = nbgrading.autograde(course, lab, student="alice", timeout=1800)
        seconds = time.perf_counter() - start
    finally:
        if env_before is None:
            os.environ.pop("MLSEC_SANDBOX", None)
        else:
            os.environ["MLSEC_SANDBOX"] = env_before
    if proc.returncode != 0:
        raise SystemExit(f"autograde failed ({'sandboxed' if sandboxed else 'unsandboxed'}):\n{proc.stdout[-2000:]}")
    score = nbgrading.read_scores(course, lab, "alice")
    if score.auto_score != score.max_auto_score:
        raise SystemExit(f"the solution scored {score.auto_score}/{score.max_auto_score} ({'sandboxed' if sandboxed else 'unsandboxed'})")
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
        times: dict[bool, list[float]] = {True: [], False: []}
        for i in range(args.repeats):
            for sandboxed in ((True, False) if i % 2 == 0 else (False, True)):
                times[sandboxed].append(grade_once(course, args.lab, sandboxed=sandboxed))
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"autograde of one {args.lab} submission, median of {args.repeats} (alternating order)\n")
    print(nbgrading.format_table(("lab", "sandboxed s", "unsandboxed s", "sandboxed / unsandboxed", "extra s"),
                                 [(args.lab, round(on, 2), round(off, 2), round(on / off, 3), round(on - off, 2))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
