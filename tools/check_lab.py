"""Check that a lab grades as intended, with the real nbgrader, in a throwaway course.

    .venv/bin/python tools/check_lab.py lab1_extraction [lab2_watermarking ...] [--keep] [--cell-timeout S]

For each lab: copy the course config and solutions/<lab>/ into a temporary folder,
`nbgrader generate_assignment`, submit three notebooks (students `solution`: the source notebook,
`release`: the released stub notebook, `partial`: the release with only its first solution cell
filled in), run `nbgrader autograde` once, and read the scores from the gradebook.
Exit status 0 only if, for every lab, solution == max automatic score, release == 0 and
0 < partial < max. The repository's grading/ folder is never touched.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbgrading  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labs", nargs="*", help="lab names (folders of solutions/); default: all")
    ap.add_argument("--keep", action="store_true", help="keep the temporary course and print its path")
    ap.add_argument("--cell-timeout", type=int, default=None,
                    help="per-cell execution limit in seconds (default: the course config's)")
    ap.add_argument("--source", default=str(nbgrading.ROOT), help="course to copy (default: this repository)")
    args = ap.parse_args(argv)

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

    failed = []
    for lab in labs:
        tmp = Path(tempfile.mkdtemp(prefix=f"check_{lab}_"))
        start = time.perf_counter()
        try:
            result = nbgrading.check_lab(lab, workdir=tmp / "course", source=args.source,
                                         cell_timeout=args.cell_timeout)
        except nbgrading.NbgraderError as err:
            print(f"\n== {lab}: nbgrader failed\n{err}")
            failed.append(lab)
            _cleanup(tmp, args.keep)
            continue
        total = time.perf_counter() - start
        print(f"\n== {lab}  (autograde of 3 submissions: {result.autograde_seconds:.0f} s, "
              f"total {total:.0f} s)")
        rows = []
        for student in nbgrading.CHECK_STUDENTS:
            s = result.scores.get(student)
            if s is None:
                rows.append((student, "-", "-", "-", "-"))
            else:
                rows.append((student, s.auto_score, s.max_auto_score, s.manual_pending, s.max_score))
        print(nbgrading.format_table(
            ("student", "auto score", "max auto", "manual pending", "max total"), rows))
        sol = result.scores.get("solution")
        if sol is not None:
            per_cell = ", ".join(f"{g.name}={(g.auto_score or 0):g}/{g.max_score:g}"
                                 for g in sol.grades if g.cell_type == "code")
            print(f"solution per test cell: {per_cell}")
            par = result.scores.get("partial")
            if par is not None:
                passed = [g.name for g in par.grades if g.cell_type == "code" and (g.auto_score or 0) > 0]
                print(f"partial passes: {', '.join(passed) or 'nothing'}")
        if result.ok:
            print("OK")
        else:
            failed.append(lab)
            print("FAILED:\n  " + "\n  ".join(result.problems))
        _cleanup(tmp, args.keep)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


def _cleanup(tmp: Path, keep: bool) -> None:
    import shutil

    if keep:
        print(f"course kept in {tmp / 'course'}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
