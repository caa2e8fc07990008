"""Autograde every submission in grading/submitted/ and write grades and feedback (`make grade`).

    .venv/bin/mlsec-grade [--course DIR] [--lab L ...] [--student S ...] [--force]
                          [--workers N | --scheduler tcp://host:8786] [--dashboard ADDRESS]
                          [--cell-timeout S] [--submission-timeout S] [--no-feedback] [--no-progress]

(``mlsec-grade`` is the console script of :func:`main`; ``python -m coursetools.grade`` is the same.)

Students and labs are discovered from grading/submitted/<student>/<lab>/<lab>.ipynb, and only that
file goes to the grader: a regular file under the size cap, read without following a link
(coursetools/intake.py); a link, a device, a file with a second hard link or one over the cap is
refused (the row's status says why, 0 points) and the files beside a notebook are listed, never
shipped. For each lab
the gradebook is synchronised with solutions/<lab> (`nbgrader generate_assignment`, releasing into a
temporary folder so that labs/ is left alone). Then every submission to grade is one task on Dask
distributed (coursetools/parallel.py): a `LocalCluster` of --workers one-thread worker processes
(default: the number of cores), or the existing cluster at --scheduler. A task runs the real
`nbgrader autograde` (and `generate_feedback`) in a throwaway course with its own gradebook on the
worker, under a wall-clock limit, its kernel in a bubblewrap sandbox (coursetools/sandbox.py; the
grader refuses to run without `bwrap` unless --no-sandbox is given), so a submission that raises,
loops, kills its kernel or is not a notebook gets what it earned (or 0 and a status) and the batch
carries on. This process alone writes what comes back: the course gradebook (grading/gradebook.db,
or PostgreSQL through MLSEC_GRADEBOOK_URL), grading/autograded/, feedback HTML without hidden tests
in grading/feedback/<student>/<lab>/ (coursetools/nbgrader_feedback.py), nbgrader's log of each
submission in grading/logs/, and grading/grades.csv, one row per (student, lab), the same rows
whatever the number of workers, and grading/integrity.csv, the hand-ins to review because their
code reaches into the kernel or a test cell of theirs did not run to its end
(coursetools/integrity.py). Written answers wait for an instructor (formgrader: `make lab`) and
are reported as pending points. Files in grading/submitted/ are only read.

A run again grades only what is missing or changed: grading/manifest.jsonl records each written
result with the submission's content hash and the version of the lab and grading code it was
graded at. --force, --student and --lab grade (again) all that they select.

Exit status: 0 when the batch ran (failed submissions are reported in the table), 2 when there is
nothing to grade, the arguments are wrong or a worker refuses, 1 when a lab could not be prepared.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from . import intake, integrity, nbgrading, parallel, sandbox

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
    """{student: [lab, ...]} for every grading/submitted/<student>/<lab>/ holding a notebook, found
    without following links (a lab folder that is a link is listed, to be refused with a row)."""
    return intake.scan_submitted(submitted)[0]


def prepare_lab(course: Path, lab: str, logs: Path) -> str | None:
    """Load solutions/<lab> into the course gradebook; returns an error message or None."""
    if not (course / "solutions" / lab / f"{lab}.ipynb").is_file():
        return f"unknown lab: no solutions/{lab}/{lab}.ipynb"
    with tempfile.TemporaryDirectory(prefix="release_") as tmp:
        proc = nbgrading.run_nbgrader(course, "generate_assignment", lab, "--force",
                                      f"--CourseDirectory.release_directory={tmp}",
                                      timeout=600, check=False)
    (logs / f"_generate_{lab}.log").write_text(proc.stdout or "")
    if proc.returncode != 0:
        return f"nbgrader generate_assignment failed: {nbgrading.log_reason(proc.stdout or '')}"
    return None


def cell_text(row: Row | None) -> str:
    if row is None:
        return "-"
    if row.score is None or not row.status.startswith("ok"):
        kind = row.status.split(":")[0].split(" after")[0]
        return f"{row.score.score:g} ({kind})" if row.score is not None else kind
    s = row.score
    text = f"{s.score:g}/{s.max_score:g}"
    return text + (f" +{s.manual_pending:g}?" if s.manual_pending else "")


def _display_url(url: str) -> str:
    """The gradebook URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _open_gradebook(course: Path):
    """The course gradebook, opened; :class:`RuntimeError` saying which URL when it cannot be."""
    url = nbgrading.gradebook_url(course)
    try:
        return nbgrading._gradebook(course)
    except Exception as err:
        raise RuntimeError(f"cannot open the gradebook {_display_url(url)} (nbgrader_config.py; set "
                           f"MLSEC_GRADEBOOK_URL=postgresql://user@host:5432/db for PostgreSQL, unset for "
                           f"grading/gradebook.db): {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None


def _score(gb, lab: str, student: str) -> nbgrading.LabScore | None:
    try:
        return nbgrading.read_scores(None, lab, student, gradebook=gb)
    except KeyError:
        return None
    finally:
        gb.db.rollback()  # end the read transaction: SQLite writers (formgrader) are not blocked


def earlier(gb, student: str, lab: str) -> Row:
    """The gradebook's scores from an earlier run, for a submission this run does not grade."""
    score = _score(gb, lab, student)
    if score is None:
        return Row(student, lab, "not graded yet")
    if any(g.auto_score is None for g in score.grades if g.cell_type == "code"):
        return Row(student, lab, "not graded yet", score)
    return Row(student, lab, "ok (earlier run)", score)


def graded_row(gb, student: str, lab: str, status: str, seconds: float = 0.0) -> Row:
    """The row of a graded submission: its status, and the scores in the course gradebook."""
    score = _score(gb, lab, student)
    if not status.startswith("ok") and score is not None:
        # nbgrader flags every cell of a notebook it could not execute for manual grading; the
        # tests that never ran earned nothing, and only the written answers still wait.
        score = dataclasses.replace(score, manual_pending=sum(
            g.max_score for g in score.grades if g.cell_type != "code" and g.needs_manual_grade))
    return Row(student, lab, status, score, seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--course", default=str(nbgrading.ROOT), help="course root (default: this repository)")
    ap.add_argument("--lab", action="append", help="grade only this lab, changed or not (repeatable)")
    ap.add_argument("--student", action="append", help="grade only this student, changed or not (repeatable)")
    ap.add_argument("--force", action="store_true",
                    help="grade every submission again, even those unchanged since the last run")
    ap.add_argument("--workers", type=int, default=None,
                    help=f"worker processes of the local Dask cluster (default: the number of cores, "
                         f"{parallel.default_workers()} here)")
    ap.add_argument("--scheduler", default=None,
                    help="address of an existing Dask scheduler (tcp://host:8786) to send the tasks to, "
                         "instead of a local cluster")
    ap.add_argument("--dashboard", default=":8787",
                    help="address of the local cluster's dashboard (default :8787; :0 picks a free port)")
    ap.add_argument("--cell-timeout", type=int, default=None,
                    help="per-cell limit in seconds (default: Execute.timeout of nbgrader_config.py)")
    ap.add_argument("--submission-timeout", type=float, default=1200,
                    help="wall-clock limit of one submission's autograde, in seconds (default 1200)")
    ap.add_argument("--no-feedback", action="store_true", help="skip the feedback HTML")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--no-sandbox", action="store_true",
                    help="run student code WITHOUT the bubblewrap sandbox (it can then read and write everything "
                         "the grader can: the gradebook, hidden tests, other submissions); prints a warning")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers: expected a number of worker processes >= 1, got {args.workers}")
    if args.workers is not None and args.scheduler:
        ap.error("--workers sizes a local cluster; with --scheduler the cluster's own workers grade")
    if args.scheduler and "://" not in args.scheduler:
        ap.error(f"--scheduler: expected an address like tcp://host:8786, got {args.scheduler!r}")
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
    # `timeout` and `kill` send SIGTERM: exit through Python so that the cluster and nbgrader's
    # kernels go down too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    course = Path(args.course).resolve()
    submitted = nbgrading.course_dir(course, "submitted")
    try:
        max_bytes = intake.max_notebook_bytes(nbgrading.course_config(course))
    except ValueError as err:
        print(f"refusing to grade: nbgrader_config.py: {err}", file=sys.stderr)
        return 2
    found, not_handins = intake.scan_submitted(submitted)
    selected = {s: [lab for lab in labs if not args.lab or lab in args.lab]
                for s, labs in found.items() if not args.student or s in args.student}
    selected = {s: labs for s, labs in selected.items() if labs}
    if not selected:
        what = " matching --student/--lab" if (args.student or args.lab) else ""
        print(f"nothing to grade{what}: no notebooks in {submitted}/<student>/<lab>/ "
              f"(expected e.g. {submitted}/alice/lab1_extraction/lab1_extraction.ipynb)", file=sys.stderr)
        return 2
    try:
        _open_gradebook(course).close()
    except RuntimeError as err:
        print(f"refusing to grade: {err}", file=sys.stderr)
        return 2
    # The table and grades.csv always cover every submission; the ones not selected keep the
    # scores of an earlier run, read from the gradebook.
    labs = sorted({lab for ls in found.values() for lab in ls})
    students = sorted(found)
    logs = submitted.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    maxima: dict[str, tuple[float, float]] = {}
    errors: dict[str, str] = {}
    code = parallel.code_version()
    # Each lab goes into the course gradebook, and its bundle for the workers is built, side by
    # side (each is an nbgrader process; a bundle nobody needs is dropped).
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel.default_workers()) as pool:
        prepared = {lab: pool.submit(prepare_lab, course, lab, logs) for lab in labs}
        bundling = {lab: pool.submit(parallel.make_bundle, course, lab, code=code) for lab in labs
                    if (course / "solutions" / lab / f"{lab}.ipynb").is_file()}
        concurrent.futures.wait([*prepared.values(), *bundling.values()])
    for lab in labs:
        error = prepared[lab].result()
        if error is None:
            maxima[lab] = nbgrading.read_max_scores(course, lab)
        else:
            print(f"  {lab}: {error}", flush=True)
            errors[lab] = error
            maxima[lab] = (0.0, 0.0)

    versions = {lab: parallel.lab_version(course, lab, code) for lab in labs if lab not in errors}
    options = {"cell_timeout": args.cell_timeout, "sandboxed": sandbox.sandbox_enabled(),
               "feedback": not args.no_feedback}
    manifest = parallel.Manifest(submitted.parent / "manifest.jsonl")
    forced = args.force or bool(args.student or args.lab)
    workers = None if args.scheduler else (args.workers or parallel.default_workers())
    threads = max(1, parallel.default_workers() // workers) if workers else None
    rows: dict[tuple[str, str], Row] = {}
    tasks: list[parallel.Task] = []
    unchanged = 0
    notebooks: dict[tuple[str, str], bytes] = {}   # what intake took: the integrity scan reads these
    not_taken = list(not_handins)  # files beside the notebooks, links, ... for the report
    gb = _open_gradebook(course)
    try:
        for lab in labs:
            for student in students:
                if lab not in found[student]:
                    rows[student, lab] = Row(student, lab, "not submitted")
                elif lab in errors:
                    rows[student, lab] = Row(student, lab, f"not graded: {errors[lab]}")
                elif lab not in selected.get(student, []):
                    rows[student, lab] = earlier(gb, student, lab)
                elif not _STUDENT_ID.match(student):
                    rows[student, lab] = Row(student, lab, f"skipped: student folder name {student!r} is not a valid id")
                else:
                    # Only the regular file <lab>.ipynb (and nbgrader's timestamp) goes to the grader,
                    # read without following a link (coursetools/intake.py).
                    handin = intake.read_handin(submitted, student, lab, max_bytes=max_bytes)
                    not_taken += [f"{student}/{lab}/{note}" for note in handin.ignored]
                    if handin.refused:
                        rows[student, lab] = Row(student, lab, f"refused: {handin.refused}")
                        continue
                    files = handin.files
                    notebooks[student, lab] = files[f"{lab}.ipynb"]
                    digest = parallel._digest(files)
                    done = None if forced else manifest.current(student, lab, digest=digest,
                                                                version=versions[lab], options=options)
                    if done and (not done["status"].startswith("ok") or _score(gb, lab, student) is not None):
                        # graded as it is now, at this version: the recorded status, today's scores
                        rows[student, lab] = graded_row(gb, student, lab, done["status"])
                        unchanged += 1
                        continue
                    manual = parallel.manual_grades(gb, lab, student)
                    gb.db.rollback()
                    tasks.append(parallel.Task(
                        student=student, lab=lab, files=files, digest=digest, cell_timeout=args.cell_timeout,
                        submission_timeout=args.submission_timeout, feedback=not args.no_feedback,
                        sandboxed=sandbox.sandbox_enabled(), threads=threads, **manual))
        print(f"grading {len(tasks)} submission(s) of {len({t.student for t in tasks})} student(s), "
              f"lab(s) {', '.join(sorted({t.lab for t in tasks})) or '-'}"
              + (f"; {unchanged} unchanged since the last run (--force grades them again)" if unchanged else ""),
              flush=True)
        if tasks:
            try:
                bundles = {lab: bundling[lab].result() for lab in sorted({t.lab for t in tasks})}
            except nbgrading.NbgraderError as err:
                print(f"refusing to grade: cannot build a lab for the workers: {err}", file=sys.stderr)
                return 1

            def on_result(result: parallel.Result) -> None:
                parallel.apply_result(course, gb, result)
                (logs / f"{result.student}__{result.lab}.log").write_text(result.log)
                if result.version:  # a task that crashed has no result to keep: the next run retries it
                    manifest.record(result, options)
                row = rows[result.student, result.lab] = graded_row(
                    gb, result.student, result.lab, result.status, result.seconds)
                _write(f"  {row.student:<16} {row.lab:<24} {cell_text(row):<22} {row.seconds:6.1f} s  {row.status}")

            try:
                with parallel.cluster(workers=workers, scheduler=args.scheduler, dashboard=args.dashboard) as client:
                    parallel.run_tasks(client, tasks, bundles, on_result, progress=not args.no_progress)
            except (parallel.WorkerRefused, RuntimeError) as err:
                print(f"refusing to grade: {err}", file=sys.stderr)
                return 2

        table = []
        for student in students:
            total = sum(rows[student, lab].score.score for lab in labs if rows[student, lab].score is not None)
            pending = sum(rows[student, lab].score.manual_pending for lab in labs
                          if rows[student, lab].score is not None)
            table.append((student, *(cell_text(rows[student, lab]) for lab in labs),
                          f"{total:g}/{sum(m[0] for m in maxima.values()):g}", f"{pending:g}"))
    finally:
        gb.close()
    print()
    print(nbgrading.format_table(("student", *labs, "total", "pending"), table))
    print("\nA/B +P?: A points of B so far, P points of written answers wait for manual grading.")
    csv_path = nbgrading.write_grades_csv(
        submitted.parent / "grades.csv", CSV_HEADER,
        (rows[s, lab].csv(*maxima[lab]) for s in students for lab in labs))
    failed = [f"{r.student}/{r.lab}: {r.status}" for r in rows.values()
              if not r.status.startswith(("ok", "refused: ")) and r.status != "not submitted"]
    if failed:
        print("\nnot graded normally (see grading/logs/):\n  " + "\n  ".join(failed))
    refused = [f"{r.student}/{r.lab}: {r.status}" for r in rows.values() if r.status.startswith("refused: ")]
    if refused:
        print(f"\nrefused, scored 0 (a hand-in is one regular file <lab>.ipynb of at most {max_bytes} bytes, "
              "not a link; coursetools/intake.py):\n  " + "\n  ".join(refused))
    if not_taken:
        print(f"\nnot taken from {submitted} (only <lab>/<lab>.ipynb, a regular file, is graded):\n  "
              + "\n  ".join(not_taken[:50]) + (f"\n  ... ({len(not_taken) - 50} more)" if len(not_taken) > 50 else ""))
    report, flagged = integrity_report(course, found, logs, notebooks=notebooks, max_bytes=max_bytes)
    if flagged:
        print(f"\nfor review: {len(flagged)} submission(s) with code that games the grader or looks like it "
              f"({report}):\n  " + "\n  ".join(flagged[:20]) + ("\n  ..." if len(flagged) > 20 else ""))
    print(f"\nwrote {csv_path}")
    if not args.no_feedback:
        print(f"feedback in {nbgrading.course_dir(course, 'feedback')}/<student>/<lab>/")
    return 1 if errors else 0


def integrity_report(course: Path, found: dict[str, list[str]], logs: Path, *,
                     notebooks: dict[tuple[str, str], bytes] | None = None,
                     max_bytes: int = intake.MAX_NOTEBOOK_BYTES) -> tuple[Path, list[str]]:
    """``grading/integrity.csv`` for every submission: what the code scan finds in the student's
    cells, and the test cells that did not run to their end in the last grading (from its log).

    ``notebooks``: the hand-ins' bytes as intake took them; a hand-in not in it is read through
    intake (a refused one is not scanned).

    Returns:
        the report's path and one line per flagged submission.
    """
    import nbformat

    submitted = nbgrading.course_dir(course, "submitted")
    notebooks = notebooks or {}
    sources: dict[str, object] = {}
    findings: dict[tuple[str, str], list[integrity.Finding]] = {}
    for student, labs in found.items():
        for lab in labs:
            items: list[integrity.Finding] = []
            try:
                if lab not in sources:
                    src = course / "solutions" / lab / f"{lab}.ipynb"
                    sources[lab] = nbgrading.read_notebook(src) if src.is_file() else None
                data = notebooks.get((student, lab))
                if data is None:
                    data = intake.read_handin(submitted, student, lab, max_bytes=max_bytes).files.get(f"{lab}.ipynb")
                if data is not None:
                    nb = nbformat.reads(data.decode("utf-8"), as_version=nbgrading.NB_VERSION)
                    items = integrity.scan_notebook(nb, source=sources[lab])
            except Exception:  # not a notebook: reported as failed by the grading itself
                pass
            log = logs / f"{student}__{lab}.log"
            if log.is_file():
                items += [integrity.Finding(-1, 0, f"test cell {name} did not run to its end (scored 0)", "")
                          for name in integrity.failed_cells_in_log(log.read_text(errors="replace"))]
            if items:
                findings[student, lab] = items
    report = integrity.write_report(submitted.parent / "integrity.csv", findings)
    flagged = [f"{s}/{lab}: " + "; ".join(dict.fromkeys(f.rule for f in items)) for (s, lab), items in sorted(findings.items())]
    return report, flagged


def _write(line: str) -> None:
    """A line on stdout that does not break the progress bar on stderr."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()

if __name__ == "__main__":
    sys.exit(main())
