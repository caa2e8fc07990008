"""Autograde every submission in grading/submitted/ and write grades and feedback (`make grade`).

    .venv/bin/mlsec-grade [--course DIR] [--lab L ...] [--student S ...]
                          [--cell-timeout S] [--submission-timeout S] [--no-feedback]

(``mlsec-grade`` is the console script of :func:`main`; ``python -m coursetools.grade`` is the same.)

Students and labs are discovered from grading/submitted/<student>/<lab>/<lab>.ipynb. For each lab
the gradebook is synchronised with solutions/<lab> (`nbgrader generate_assignment`, releasing into a
temporary folder so that labs/ is left alone); then each (student, lab) is graded by its own
`nbgrader autograde` call under a wall-clock limit, its kernel in a bubblewrap sandbox
(coursetools/sandbox.py; the grader refuses to run without `bwrap` unless --no-sandbox is given), so a submission that raises, loops, kills its
kernel or is not a notebook gets what it earned (or 0 and a status) and the batch carries on.
Feedback HTML without hidden tests goes to grading/feedback/<student>/<lab>/ (see
coursetools/nbgrader_feedback.py); grading/grades.csv gets one row per (student, lab); nbgrader's
log of each call goes to grading/logs/. Written answers wait for an instructor (formgrader:
`make lab`) and are reported as pending points. Files in grading/submitted/ are only read.

Exit status: 0 when the batch ran (failed submissions are reported in the table), 2 when there is
nothing to grade or the arguments are wrong, 1 when a lab could not be prepared.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import nbgrading, sandbox

CSV_HEADER = ("student", "lab", "score", "max_score", "auto_score", "max_auto_score",
              "manual_score", "manual_pending", "status")
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


@dataclasses.dataclass
class Row:
    student: str
    lab: str
    status: str                      # ok | failed: ... | timed out ... | not submitted | ...
    score: nbgrading.LabScore | None = None
    seconds: float = 0.0

    def csv(self, max_score: float, max_auto: float) -> tuple:
        s = self.score
        if s is None:
            return (self.student, self.lab, 0.0, max_score, 0.0, max_auto, 0.0, 0.0, self.status)
        return (self.student, self.lab, s.score, s.max_score, s.auto_score, s.max_auto_score,
                s.manual_score, s.manual_pending, self.status)


def discover(submitted: Path) -> dict[str, list[str]]:
    """{student: [lab, ...]} for every grading/submitted/<student>/<lab>/ holding a notebook."""
    found: dict[str, list[str]] = {}
    if not submitted.is_dir():
        return found
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir() and not p.name.startswith(".")):
        labs = sorted(p.name for p in student_dir.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.ipynb")))
        if labs:
            found[student_dir.name] = labs
    return found


def _reason(log: str) -> str:
    """The most telling error line of an nbgrader log (the exception, else the last ERROR)."""
    lines = [ln.strip() for ln in log.splitlines()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", ln) and "nbgrader" not in ln.split(":")[0].lower():
            return ln[:160]
    errors = [ln for ln in lines if "| ERROR]" in ln and "Please see" not in ln]
    return errors[-1].split("]", 1)[-1].strip()[:160] if errors else "see the log"


def prepare_lab(course: Path, lab: str, logs: Path) -> str | None:
    """Load solutions/<lab> into the gradebook; returns an error message or None."""
    if not (course / "solutions" / lab / f"{lab}.ipynb").is_file():
        return f"unknown lab: no solutions/{lab}/{lab}.ipynb"
    with tempfile.TemporaryDirectory(prefix="release_") as tmp:
        proc = nbgrading.run_nbgrader(course, "generate_assignment", lab, "--force",
                                      f"--CourseDirectory.release_directory={tmp}",
                                      timeout=600, check=False)
    (logs / f"_generate_{lab}.log").write_text(proc.stdout or "")
    if proc.returncode != 0:
        return f"nbgrader generate_assignment failed: {_reason(proc.stdout)}"
    return None


def grade_one(course: Path, student: str, lab: str, logs: Path, *, cell_timeout: int | None,
              submission_timeout: float, feedback: bool) -> Row:
    start = time.perf_counter()
    log_path = logs / f"{student}__{lab}.log"
    if not _STUDENT_ID.match(student):
        return Row(student, lab, f"skipped: student folder name {student!r} is not a valid id")
    try:
        proc = nbgrading.autograde(course, lab, student=student, cell_timeout=cell_timeout,
                                   timeout=submission_timeout)
        log, status = proc.stdout or "", "ok" if proc.returncode == 0 else f"failed: {_reason(proc.stdout)}"
    except subprocess.TimeoutExpired as err:
        log = err.output or ""
        status = f"timed out after {submission_timeout:g} s (killed)"
    log_path.write_text(log)
    try:
        score = nbgrading.read_scores(course, lab, student)
    except KeyError:
        score = None
    if status == "ok" and score is not None and any(
            g.auto_score is None for g in score.grades if g.cell_type == "code"):
        status = "failed: some tests were not run"
    if status != "ok" and score is not None:
        # nbgrader flags every cell of a notebook it could not execute for manual grading; the
        # tests that never ran earned nothing, and only the written answers still wait.
        score = dataclasses.replace(score, manual_pending=sum(
            g.max_score for g in score.grades if g.cell_type != "code" and g.needs_manual_grade))
    if status == "ok" and feedback:
        fb = nbgrading.generate_feedback(course, lab, student=student, check=False)
        with open(log_path, "a") as fh:
            fh.write("\n---- generate_feedback ----\n" + (fb.stdout or ""))
        if fb.returncode != 0:
            status = f"ok (feedback failed: {_reason(fb.stdout)})"
    return Row(student, lab, status, score, time.perf_counter() - start)


def earlier(course: Path, student: str, lab: str) -> Row:
    """The gradebook's scores from an earlier run, for a submission this run does not grade."""
    try:
        score = nbgrading.read_scores(course, lab, student)
    except KeyError:
        return Row(student, lab, "not graded yet")
    if any(g.auto_score is None for g in score.grades if g.cell_type == "code"):
        return Row(student, lab, "not graded yet", score)
    return Row(student, lab, "ok (earlier run)", score)


def cell_text(row: Row | None) -> str:
    if row is None:
        return "-"
    if row.score is None or not row.status.startswith("ok"):
        kind = row.status.split(":")[0].split(" after")[0]
        return f"{row.score.score:g} ({kind})" if row.score is not None else kind
    s = row.score
    text = f"{s.score:g}/{s.max_score:g}"
    return text + (f" +{s.manual_pending:g}?" if s.manual_pending else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--course", default=str(nbgrading.ROOT), help="course root (default: this repository)")
    ap.add_argument("--lab", action="append", help="grade only this lab (repeatable)")
    ap.add_argument("--student", action="append", help="grade only this student (repeatable)")
    ap.add_argument("--cell-timeout", type=int, default=None,
                    help="per-cell limit in seconds (default: Execute.timeout of nbgrader_config.py)")
    ap.add_argument("--submission-timeout", type=float, default=1200,
                    help="wall-clock limit of one submission's autograde, in seconds (default 1200)")
    ap.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run student code WITHOUT the bubblewrap sandbox (it can then read and write everything "
                         "the grader can: the gradebook, hidden tests, other submissions); prints a warning")
    args = ap.parse_args(argv)
    if args.no_sandbox:
        os.environ["MLSEC_SANDBOX"] = "off"  # read by coursetools.sandbox in the nbgrader processes
    if sandbox.sandbox_enabled():
        try:
            sandbox.check_available()
        except sandbox.SandboxUnavailable as err:
            print(f"refusing to grade: {err}", file=sys.stderr)
            return 2
    else:
        print("WARNING: grading WITHOUT a sandbox (--no-sandbox / MLSEC_SANDBOX=off): student code runs with your "
              "rights and can read the hidden tests and change the gradebook.", file=sys.stderr, flush=True)
    # `timeout` and `kill` send SIGTERM: exit through Python so that nbgrader's kernels die too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    course = Path(args.course).resolve()
    submitted = nbgrading.course_dir(course, "submitted")
    found = discover(submitted)
    selected = {s: [lab for lab in labs if not args.lab or lab in args.lab]
                for s, labs in found.items() if not args.student or s in args.student}
    selected = {s: labs for s, labs in selected.items() if labs}
    if not selected:
        what = " matching --student/--lab" if (args.student or args.lab) else ""
        print(f"nothing to grade{what}: no notebooks in {submitted}/<student>/<lab>/ "
              f"(expected e.g. {submitted}/alice/lab1_extraction/lab1_extraction.ipynb)", file=sys.stderr)
        return 2
    # The table and grades.csv always cover every submission; the ones not selected keep the
    # scores of an earlier run, read from the gradebook.
    labs = sorted({lab for ls in found.values() for lab in ls})
    students = sorted(found)
    logs = submitted.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"grading {sum(map(len, selected.values()))} submission(s) of {len(selected)} student(s), "
          f"lab(s) {', '.join(sorted({lab for ls in selected.values() for lab in ls}))}", flush=True)

    rows: dict[tuple[str, str], Row] = {}
    maxima: dict[str, tuple[float, float]] = {}
    broken_labs = []
    for lab in labs:
        error = prepare_lab(course, lab, logs)
        if error is None:
            maxima[lab] = nbgrading.read_max_scores(course, lab)
        else:
            print(f"  {lab}: {error}", flush=True)
            broken_labs.append(lab)
            maxima[lab] = (0.0, 0.0)
        for student in students:
            if lab not in found[student]:
                rows[student, lab] = Row(student, lab, "not submitted")
            elif error is not None:
                rows[student, lab] = Row(student, lab, f"not graded: {error}")
            elif lab not in selected.get(student, []):
                rows[student, lab] = earlier(course, student, lab)
            else:
                row = grade_one(course, student, lab, logs, cell_timeout=args.cell_timeout,
                                submission_timeout=args.submission_timeout,
                                feedback=not args.no_feedback)
                rows[student, lab] = row
                print(f"  {student:<16} {lab:<24} {cell_text(row):<22} {row.seconds:6.1f} s  {row.status}",
                      flush=True)

    table = []
    for student in students:
        total = sum(rows[student, lab].score.score for lab in labs if rows[student, lab].score is not None)
        pending = sum(rows[student, lab].score.manual_pending for lab in labs
                      if rows[student, lab].score is not None)
        table.append((student, *(cell_text(rows[student, lab]) for lab in labs),
                      f"{total:g}/{sum(m[0] for m in maxima.values()):g}", f"{pending:g}"))
    print()
    print(nbgrading.format_table(("student", *labs, "total", "pending"), table))
    print("\nA/B +P?: A points of B so far, P points of written answers wait for manual grading.")
    csv_path = nbgrading.write_grades_csv(
        submitted.parent / "grades.csv", CSV_HEADER,
        (rows[s, lab].csv(*maxima[lab]) for s in students for lab in labs))
    failed = [f"{r.student}/{r.lab}: {r.status}" for r in rows.values()
              if not r.status.startswith("ok") and r.status != "not submitted"]
    if failed:
        print("\nnot graded normally (see grading/logs/):\n  " + "\n  ".join(failed))
    print(f"\nwrote {csv_path}")
    if not args.no_feedback:
        print(f"feedback in {nbgrading.course_dir(course, 'feedback')}/<student>/<lab>/")
    return 1 if broken_labs else 0


if __name__ == "__main__":
    sys.exit(main())
