"""Check that a lab grades as intended, with the real nbgrader, in a throwaway course.

    .venv/bin/mlsec-check-lab [LAB ...] [--keep] [--cell-timeout S] [--timeout S] [--source DIR]

(``mlsec-check-lab`` is the console script of :func:`main`; ``python -m coursetools.check_lab`` is
the same.)

For each lab (default: every lab in solutions/): copy the course config and solutions/<lab>/ into
a temporary folder, `nbgrader generate_assignment`, submit three notebooks (students `solution`:
the source notebook, `release`: the released stub notebook, `partial`: the release with only its
first solution cell filled in), run `nbgrader autograde` once for the three, and read the scores
from the gradebook. Exit status 0 only if, for every lab, solution == max automatic score,
release == 0 and 0 < partial < max. The repository's grading/ folder is never touched.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import nbgrading


def _say(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check_one(lab: str, args) -> bool:
    tmp = Path(tempfile.mkdtemp(prefix=f"check_{lab}_"))
    start = time.perf_counter()
    print(f"\n== {lab}", flush=True)
    try:
        result = nbgrading.check_lab(lab, workdir=tmp / "course", source=args.source,
                                     cell_timeout=args.cell_timeout, timeout=args.timeout,
                                     progress=_say)
    except nbgrading.NbgraderError as err:
        print(f"FAILED: nbgrader failed\n{err}")
        return False
    except subprocess.TimeoutExpired as err:
        print(f"FAILED: autograde of the three submissions took more than {err.timeout:g} s (killed)")
        return False
    finally:
        if args.keep:
            print(f"course kept in {tmp / 'course'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"autograde of 3 submissions: {result.autograde_seconds:.0f} s; check total "
          f"{time.perf_counter() - start:.0f} s")
    rows = []
    for student in nbgrading.CHECK_STUDENTS:
        s = result.scores.get(student)
        secs = result.student_seconds.get(student)
        secs = f"~{secs:.0f}" if secs is not None else "-"
        if s is None:
            rows.append((student, "-", "-", "-", "-", secs))
        else:
            rows.append((student, s.auto_score, s.max_auto_score, s.manual_pending, s.max_score, secs))
    print(nbgrading.format_table(
        ("student", "auto score", "max auto", "manual pending", "max total", "seconds"), rows))
    sol = result.scores.get("solution")
    if sol is not None:
        print("solution per test cell: " + ", ".join(
            f"{g.name}={(g.auto_score or 0):g}/{g.max_score:g}" for g in sol.grades if g.cell_type == "code"))
    par = result.scores.get("partial")
    if par is not None:
        passed = [g.name for g in par.grades if g.cell_type == "code" and (g.auto_score or 0) > 0]
        print(f"partial passes: {', '.join(passed) or 'nothing'}")
    if result.ok:
        print("OK")
    else:
        print("FAILED:\n  " + "\n  ".join(result.problems))
    return result.ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labs", nargs="*", help="lab names (folders of solutions/); default: all")
    ap.add_argument("--keep", action="store_true", help="keep the temporary course and print its path")
    ap.add_argument("--cell-timeout", type=int, default=None,
                    help="per-cell execution limit in seconds (default: the course config's Execute.timeout)")
    ap.add_argument("--timeout", type=float, default=1800,
                    help="wall-clock limit of the autograde call, in seconds (default 1800)")
    ap.add_argument("--source", default=str(nbgrading.ROOT), help="course to copy (default: this repository)")
    args = ap.parse_args(argv)
    # `timeout` and `kill` send SIGTERM: exit through Python so that nbgrader's kernels die too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    available = nbgrading.discover_labs(args.source)
    labs = args.labs or available
    if not labs:
        print(f"no labs found in {Path(args.source) / 'solutions'}", file=sys.stderr)
        return 2
    unknown = [lab for lab in labs if lab not in available]
    if unknown:
        print(f"unknown lab(s) {', '.join(unknown)}; available: {', '.join(available) or 'none'}",
              file=sys.stderr)
        return 2
    failed = [lab for lab in labs if not check_one(lab, args)]
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
