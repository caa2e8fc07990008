"""Lab timings: executing each solution notebook, and autograding one submission of it.

    .venv/bin/python benchmarks/bench_labs.py [LAB ...] [--repeat N] [--source DIR]

Per lab: the wall time to execute solutions/<lab>/<lab>.ipynb with nbclient (kernel start
included; the slowest cell is reported too, to compare with the per-cell limit Execute.timeout),
and the wall time of `nbgrader autograde` for one submission (the solution) in a throwaway course
(coursetools/nbgrading.py), which adds nbgrader's own work (sanitising, gradebook) to the
execution. Under autograde (NBGRADER_EXECUTION=autograde) illustrative cells run smaller or not at
all (labkit.grading.autograding), so "autograde / execute" is the grading mode's saving (aim: <= 0.5).
With --repeat N each is measured N times and the median is shown. Budget: a lab must execute in
<= 240 s on a 2-core CPU (aim 120 s).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from coursetools import nbgrading

ROOT = Path(__file__).resolve().parents[1]

BUDGET_S = 240.0


def execute_once(notebook: Path, timeout: int) -> tuple[float, float, int, list[str]]:
    """Execute a notebook in its folder; returns (seconds, slowest cell seconds, cells, errors)."""
    from datetime import datetime

    import nbclient

    nb = nbgrading.read_notebook(notebook)
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                     record_timing=True,
                                     resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    slowest, errors = 0.0, []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        ex = cell.metadata.get("execution", {})
        t0, t1 = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        if t0 and t1:
            d = (datetime.fromisoformat(t1.replace("Z", "+00:00"))
                 - datetime.fromisoformat(t0.replace("Z", "+00:00"))).total_seconds()
            slowest = max(slowest, d)
        errors += [f"cell {i}: {o.get('ename')}" for o in cell.get("outputs", []) if o.output_type == "error"]
    return seconds, slowest, sum(c.cell_type == "code" for c in nb.cells), errors


def autograde_once(course: Path, lab: str) -> float:
    start = time.perf_counter()
    nbgrading.autograde(course, lab, student="bench", check=True, timeout=1800)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labs", nargs="*", help="labs to time (default: all in solutions/)")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per number, median shown (default 3)")
    ap.add_argument("--source", default=str(ROOT), help="course root (default: this repository)")
    ap.add_argument("--timeout", type=int, default=600, help="per-cell limit while executing")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error(f"--repeat must be >= 1, got {args.repeat}")
    os.environ.setdefault("LABKIT_PROGRESS", "0")
    labs = args.labs or nbgrading.discover_labs(args.source)
    if not labs:
        print(f"no labs in {Path(args.source) / 'solutions'}")
        return 0
    print(f"Lab timings on {os.cpu_count()} CPU core(s), median of {args.repeat} run(s); "
          f"budget {BUDGET_S:g} s per lab", flush=True)
    rows, over = [], []
    for lab in labs:
        notebook = Path(args.source) / "solutions" / lab / f"{lab}.ipynb"
        runs = [execute_once(notebook, args.timeout) for _ in range(args.repeat)]
        exec_s = statistics.median(r[0] for r in runs)
        slowest = max(r[1] for r in runs)
        errors = runs[-1][3]
        with tempfile.TemporaryDirectory(prefix=f"bench_{lab}_") as tmp:
            course = nbgrading.make_course(Path(tmp) / "course", [lab], source=args.source)
            nbgrading.generate_assignment(course, lab)
            nbgrading.submit(course, "bench", lab, nbgrading.read_notebook(course / "solutions" / lab / f"{lab}.ipynb"))
            grade_s = statistics.median(autograde_once(course, lab) for _ in range(args.repeat))
            score = nbgrading.read_scores(course, lab, "bench")
        rows.append((lab, runs[0][2], round(exec_s, 1), round(slowest, 1), round(grade_s, 1),
                     round(grade_s / exec_s, 2), f"{score.auto_score:g}/{score.max_auto_score:g}",
                     "; ".join(errors) or "-"))
        if exec_s > BUDGET_S:
            over.append(lab)
        print(f"  {lab}: execute {exec_s:.1f} s, autograde {grade_s:.1f} s", flush=True)
    print()
    print(nbgrading.format_table(("lab", "code cells", "execute s", "slowest cell s", "autograde s",
                                  "autograde / execute", "auto score", "errors while executing"), rows))
    if over:
        print(f"\nover the {BUDGET_S:g} s budget: {', '.join(over)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
