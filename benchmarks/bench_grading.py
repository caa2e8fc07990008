"""Grading throughput: `mlsec-grade` on N synthetic submissions per lab with 1 and 2 Dask workers.

    .venv/bin/python benchmarks/bench_grading.py [--lab LAB ...] [--per-lab N] [--workers 1 2]
                                                 [--repeats R] [--cell-timeout S] [--smoke]

Each repeat builds a throwaway course (coursetools/nbgrading.py) holding, for every lab, N
submissions made from the lab's solution and release: correct, partial (the first task only),
blank (the release), raising (every solution cell raises), one that loops in its first cell (the
cell timeout stops it), then more correct ones. It runs the real `mlsec-grade --force` (sandboxed,
feedback on) with each worker count, in alternating order, and reads its output as it comes: the
table gives the medians of the whole command (preparing the labs, starting the cluster, grading,
writing) and of the grading phase alone (cluster up to the last result), submissions per minute,
the speed-up over the first worker count, and the mean time of one submission on a worker.

The projection scales the measured per-submission cost of each lab to 200 and 2,000 students x 5
labs on 8 and 64 cores: students x 5 x mean cost / (cores x parallel efficiency), where the
efficiency is the measured grading-phase speed-up of the largest worker count over 1, divided by
that count (a 64-core projection assumes it holds). Default: the fixture course's tiny "demo" lab
(tests/fixtures/course), where the fixed cost of starting nbgrader and a kernel dominates; pass
real labs (--lab lab4b_lira) for realistic costs. Target: 2 workers >= 1.7 x one worker.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coursetools import nbgrading, sandbox

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "course"
GRADE = Path(sys.executable).with_name("mlsec-grade")
KINDS = ("correct", "partial", "blank", "raising", "looping")


def submissions(lab: str, source: Path, n: int, release) -> dict[str, object]:
    """``n`` notebooks of ``lab``: one of each kind in KINDS (in that order), then correct ones."""
    solution = nbgrading.read_notebook(source / "solutions" / lab / f"{lab}.ipynb")
    out = {}
    for i in range(n):
        kind = KINDS[i] if i < len(KINDS) else "correct"
        if kind == "correct":
            nb = copy.deepcopy(solution)
            for cell in nbgrading.solution_code_cells(nb):
                cell.source = nbgrading.strip_solution_markers(cell.source)
        elif kind == "partial":
            nb = nbgrading.make_partial(release, solution)
        elif kind == "blank":
            nb = copy.deepcopy(release)
        elif kind == "raising":
            nb = copy.deepcopy(release)
            for cell in nbgrading.solution_code_cells(nb):
                cell.source = "raise RuntimeError('this submission raises')"
        else:
            nb = copy.deepcopy(solution)
            first = nbgrading.solution_code_cells(nb)[0]
            first.source = "while True:\n    pass\n" + nbgrading.strip_solution_markers(first.source)
        out[f"s{i:03d}_{kind}"] = nb
    return out


def build_course(dest: Path, labs: list[str], per_lab: int) -> Path:
    source = FIXTURE if labs == ["demo"] else ROOT
    course = nbgrading.make_course(dest, labs, source=source)
    for lab in labs:
        release = nbgrading.read_notebook(nbgrading.generate_assignment(course, lab))
        for student, nb in submissions(lab, source, per_lab, release).items():
            nbgrading.submit(course, student, lab, nb)
    return course


def grade_once(course: Path, workers: int, cell_timeout: int) -> dict:
    """One `mlsec-grade --force` run; wall times of the command and of its grading phase."""
    cmd = [str(GRADE), "--course", str(course), "--workers", str(workers), "--force", "--no-progress",
           "--dashboard", ":0", "--cell-timeout", str(cell_timeout)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cluster_up = last_result = None
    lines = []
    for line in proc.stdout:
        now = time.perf_counter()
        lines.append(line)
        if line.startswith("Dask LocalCluster"):
            cluster_up = now
        elif line.startswith("  ") and " s  " in line:
            last_result = now
    err = proc.stderr.read()
    proc.wait()
    total = time.perf_counter() - start
    if proc.returncode != 0 or cluster_up is None or last_result is None:
        raise SystemExit(f"mlsec-grade failed ({proc.returncode}):\n{''.join(lines)[-3000:]}\n{err[-2000:]}")
    manifest = [json.loads(x) for x in (course / "grading" / "manifest.jsonl").read_text().splitlines()]
    return {"total": total, "grading": last_result - cluster_up, "manifest": manifest[-_count(course):]}


def _count(course: Path) -> int:
    return sum(1 for _ in nbgrading.course_dir(course, "submitted").glob("*/*/*.ipynb"))


def human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", action="append", help="lab to grade (repeatable; default: the fixture's demo lab)")
    ap.add_argument("--per-lab", type=int, default=8, help="submissions per lab (default 8)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per worker count; the median is shown (default 3)")
    ap.add_argument("--cell-timeout", type=int, default=10, help="per-cell limit: what the looping submission costs")
    ap.add_argument("--smoke", action="store_true", help="tiny run for the tests: 2 submissions, 1 repeat")
    args = ap.parse_args(argv)
    if args.smoke:
        args.per_lab, args.repeats, args.cell_timeout = 2, 1, 5
    labs = args.lab or ["demo"]
    if args.per_lab < 1 or args.repeats < 1 or min(args.workers) < 1:
        ap.error("expected --per-lab, --repeats and --workers of at least 1")
    sandbox.check_available()
    n = args.per_lab * len(labs)
    runs: dict[int, list[dict]] = {w: [] for w in args.workers}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        course = build_course(Path(tmp) / "course", labs, args.per_lab)
        for r in range(args.repeats):
            order = args.workers if r % 2 == 0 else list(reversed(args.workers))
            for w in order:
                runs[w].append(grade_once(course, w, args.cell_timeout))
                print(f"  repeat {r + 1}, {w} worker(s): {runs[w][-1]['total']:.1f} s "
                      f"(grading {runs[w][-1]['grading']:.1f} s)", file=sys.stderr, flush=True)
    base = args.workers[0]
    med = {w: (statistics.median(x["total"] for x in runs[w]), statistics.median(x["grading"] for x in runs[w]))
           for w in args.workers}
    cost = {w: statistics.mean(e["seconds"] for x in runs[w] for e in x["manifest"]) for w in args.workers}
    print(f"mlsec-grade of {n} submission(s) ({args.per_lab} per lab: {', '.join(KINDS[:args.per_lab])}"
          f"{', correct...' if args.per_lab > len(KINDS) else ''}) of {', '.join(labs)}, "
          f"cell timeout {args.cell_timeout} s, median of {args.repeats}\n")
    rows = []
    for w in args.workers:
        total, grading = med[w]
        rows.append((w, round(total, 1), round(grading, 1), round(60 * n / grading, 1),
                     round(med[base][1] / grading, 2), round(med[base][0] / total, 2), round(cost[w], 2)))
    print(nbgrading.format_table(("workers", "wall s", "grading s", "submissions/min", "speed-up (grading)",
                                  "speed-up (wall)", "s per submission on a worker"), rows))
    top = max(args.workers)
    efficiency = min(1.0, (med[base][1] / med[top][1]) * base / top) if top != base else 1.0
    per_sub = cost[base]  # one submission's cost with the machine to itself
    print(f"\nprojection: students x 5 labs x {per_sub:.2f} s per submission / (cores x {efficiency:.2f} "
          f"efficiency, measured {base} -> {top} workers)\n")
    proj = [(s, cores, human(s * 5 * per_sub / (cores * efficiency))) for s in (200, 2000) for cores in (8, 64)]
    print(nbgrading.format_table(("students", "cores", "projected time"), proj))
    if 2 in med and 1 in med:
        ratio = med[1][1] / med[2][1]
        print(f"\ntarget 2 workers >= 1.7 x 1 worker (grading phase): {ratio:.2f} x "
              f"{'met' if ratio >= 1.7 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
