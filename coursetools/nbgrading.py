"""Reusable pieces of the grading pipeline, on top of the real nbgrader 0.9 command line.

Every function works on a *course directory*: a folder holding ``nbgrader_config.py`` (the course's
own, which places everything relative to itself: ``solutions/`` -> ``labs/``,
``grading/submitted/<student>/<lab>/`` -> ``grading/autograded/`` -> ``grading/feedback/``, and
``grading/gradebook.db``). :func:`make_course` builds a throwaway copy of the repository's course so
that checks and tests never touch the real ``grading/`` folder.

Used by :mod:`coursetools.check_lab`, :mod:`coursetools.grade`, ``tests/test_grading.py``,
``tests/test_notebooks.py`` and ``benchmarks/bench_labs.py``. ``coursetools`` is installed with
the project (``-e .`` in requirements.txt), so it is imported as a package::

    from coursetools import nbgrading
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import nbformat

__all__ = [
    "ROOT", "CHECK_STUDENTS", "NbgraderError", "CellGrade", "LabScore", "CheckResult",
    "discover_labs", "course_config", "course_dir", "course_release_dir", "make_course",
    "run_nbgrader", "generate_assignment", "read_notebook", "solution_code_cells",
    "strip_solution_markers", "make_partial", "submit", "autograde", "generate_feedback",
    "read_scores", "read_max_scores", "gradebook_url", "log_reason", "set_manual_full_marks", "expectations", "check_lab", "format_table",
    "write_grades_csv",
]

# The repository (coursetools is installed in editable mode, so this file stays in it).
ROOT = Path(__file__).resolve().parents[1]
# The three submissions check_lab grades, in the order it reports them.
CHECK_STUDENTS = ("solution", "release", "partial")
NB_VERSION = 4
_SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries the command and the tail of its output."""


# --------------------------------------------------------------------------------------- courses
def discover_labs(root: Path | str = ROOT) -> list[str]:
    """Names of the labs in ``<root>/solutions``: folders holding ``<name>/<name>.ipynb``, sorted."""
    solutions = Path(root) / "solutions"
    if not solutions.is_dir():
        return []
    return sorted(p.name for p in solutions.iterdir() if (p / f"{p.name}.ipynb").is_file())


def course_config(course: Path | str):
    """The traitlets Config that ``<course>/nbgrader_config.py`` defines (exactly what nbgrader loads)."""
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(course) / "nbgrader_config.py"
    if not path.is_file():
        raise ValueError(f"expected a course directory holding nbgrader_config.py, got {course}")
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def _gradebook(course: Path | str, db_url: str | None = None):
    """An open-able nbgrader Gradebook for the course (use as a context manager): the config's
    ``db_url`` (SQLite in grading/, or MLSEC_GRADEBOOK_URL), or ``db_url``."""
    from nbgrader.api import Gradebook

    # nbgrader runs the `alembic` executable when it creates a gradebook: it must be on PATH.
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    cfg = course_config(course)
    return Gradebook(db_url or cfg.CourseDirectory.db_url, cfg.CourseDirectory.course_id)


def gradebook_url(course: Path | str) -> str:
    """The course gradebook's SQLAlchemy URL, as nbgrader_config.py sets it."""
    return course_config(course).CourseDirectory.db_url


def make_course(dest: Path | str, labs: Iterable[str], *, source: Path | str = ROOT,
                config: Path | str | None = None) -> Path:
    """Create a throwaway course in ``dest``: the course config and ``solutions/<lab>/`` of each lab.

    Args:
        dest: folder to create (must not exist or be empty).
        labs: lab names, each a folder ``<source>/solutions/<lab>/`` with ``<lab>.ipynb``.
        source: the course to copy from (the repository by default, a fixture course in tests).
        config: the nbgrader_config.py to use; ``<source>/nbgrader_config.py`` or else the
            repository's.
    Returns:
        ``dest`` as a Path. The config's feedback preprocessor is imported from the installed
        ``coursetools`` package, so nothing else is copied. Nothing under ``source/grading`` is
        read or written.
    """
    dest, source = Path(dest), Path(source)
    if dest.exists() and any(dest.iterdir()):
        raise ValueError(f"expected a new or empty folder for the course copy, got non-empty {dest}")
    if config is None:
        config = source / "nbgrader_config.py"
        if not config.is_file():
            config = ROOT / "nbgrader_config.py"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(config, dest / "nbgrader_config.py")
    labs = list(labs)
    if not labs:
        raise ValueError("expected at least one lab name, got none")
    for lab in labs:
        src = source / "solutions" / lab
        if not (src / f"{lab}.ipynb").is_file():
            raise ValueError(f"expected a source notebook {src / (lab + '.ipynb')}, found none "
                             f"(labs there: {discover_labs(source)})")
        shutil.copytree(src, dest / "solutions" / lab,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))
    return dest


# ------------------------------------------------------------------------------------- nbgrader
def _env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # nbgrader runs the `alembic` executable when it creates a gradebook: it must be on PATH.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    # Kernels inherit this environment: quiet progress bars, but nothing else changed (figures
    # still render inline in the autograded notebooks and the feedback).
    env.setdefault("LABKIT_PROGRESS", "0")
    for name, value in (extra or {}).items():  # None removes a variable
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the thread that started it dies (Linux
    ``PR_SET_PDEATHSIG``), so that nbgrader does not outlive a grading worker that is killed."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()  # resolved before any fork: the child only calls it


def run_nbgrader(course: Path | str, *args: str, timeout: float | None = None,
                 check: bool = True, env: dict[str, str | None] | None = None,
                 die_with_parent: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m nbgrader <args>`` in ``course`` and return the completed process.

    Args:
        timeout: wall-clock limit in seconds; past it the whole process group (nbgrader and its
            kernels) is killed and :class:`subprocess.TimeoutExpired` is raised.
        check: raise :class:`NbgraderError` when the exit status is not 0.
        env: variables to set for the command (a value of None removes the variable).
        die_with_parent: nbgrader is killed when the calling thread dies (Linux), as a grading
            worker needs when it is killed itself; its sandboxed kernels follow (bwrap
            ``--die-with-parent``).
    """
    cmd = [sys.executable, "-m", "nbgrader", *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=str(course), env=_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=_die_with_parent if die_with_parent else None)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out) from None
    except BaseException:
        # Ctrl-C, or SIGTERM turned into SystemExit by the scripts: take the kernels down too.
        _kill_group(proc)
        proc.wait()
        raise
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, None)
    if check and result.returncode != 0:
        raise NbgraderError(f"{' '.join(cmd[2:])} exited with {result.returncode} in {course}:\n"
                            + _tail(out))
    return result


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the session started for ``proc`` (nbgrader and the kernels it spawned)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(text: str, n: int = 40) -> str:
    lines = [ln for ln in (text or "").splitlines() if _is_signal(ln)]
    return "\n".join(lines[-n:])


def _is_signal(line: str) -> bool:
    """False for the known noise in nbgrader's log (SQLAlchemy warnings, checksum changes, TCP)."""
    noise = ("SAWarning", "for notebook in submission", "return [x for x in self._base_cells",
             "has changed! (should be", "Kernel is running over TCP", "| INFO]")
    return not any(s in line for s in noise)


def log_reason(log: str) -> str:
    """The most telling error line of an nbgrader log (the exception, else the last ERROR)."""
    lines = [ln.strip() for ln in log.splitlines()]
    for ln in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception|Exit)\b.*:", ln) and "nbgrader" not in ln.split(":")[0].lower():
            return ln[:160]
    errors = [ln for ln in lines if "| ERROR]" in ln and "Please see" not in ln]
    return errors[-1].split("]", 1)[-1].strip()[:160] if errors else "see the log"


def generate_assignment(course: Path | str, lab: str, *, timeout: float | None = 300) -> Path:
    """``nbgrader generate_assignment <lab> --force``; returns the released notebook's path."""
    run_nbgrader(course, "generate_assignment", lab, "--force", timeout=timeout)
    release = course_release_dir(course) / lab / f"{lab}.ipynb"
    if not release.is_file():
        raise NbgraderError(f"generate_assignment {lab} wrote no {release}")
    return release


def course_release_dir(course: Path | str) -> Path:
    cfg = course_config(course)
    return Path(cfg.CourseDirectory.root) / cfg.CourseDirectory.release_directory


def course_dir(course: Path | str, which: str) -> Path:
    """``<root>/<CourseDirectory.<which>_directory>`` (which: submitted, autograded, feedback, ...)."""
    cfg = course_config(course)
    return Path(cfg.CourseDirectory.root) / cfg.CourseDirectory[f"{which}_directory"]


def autograde(course: Path | str, lab: str, *, student: str | None = None,
              cell_timeout: int | None = None, timeout: float | None = None,
              check: bool = False, db_url: str | None = None, **run) -> subprocess.CompletedProcess:
    """``nbgrader autograde <lab> --force`` for every submitted student (or one).

    Args:
        student: grade only this student's submission (``--student``).
        cell_timeout: per-cell execution limit in seconds (``--Execute.timeout``), overriding
            nbgrader_config.py.
        timeout: wall-clock limit of the whole command (see :func:`run_nbgrader`).
        db_url: the gradebook to write (``--CourseDirectory.db_url``) instead of the config's.
        run: more keyword arguments of :func:`run_nbgrader` (``env``, ``die_with_parent``).
    """
    args = ["autograde", lab, "--force"]
    if student is not None:
        args.append(f"--student={student}")
    if cell_timeout is not None:
        args.append(f"--Execute.timeout={int(cell_timeout)}")
    if db_url is not None:
        args.append(f"--CourseDirectory.db_url={db_url}")
    return run_nbgrader(course, *args, timeout=timeout, check=check, **run)


def generate_feedback(course: Path | str, lab: str, *, student: str | None = None,
                      timeout: float | None = 300, check: bool = True, db_url: str | None = None,
                      **run) -> subprocess.CompletedProcess:
    """``nbgrader generate_feedback <lab> --force`` (hidden tests removed by the course config)."""
    args = ["generate_feedback", lab, "--force"]
    if student is not None:
        args.append(f"--student={student}")
    if db_url is not None:
        args.append(f"--CourseDirectory.db_url={db_url}")
    return run_nbgrader(course, *args, timeout=timeout, check=check, **run)


# ------------------------------------------------------------------------------------ notebooks
def read_notebook(path: Path | str) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=NB_VERSION)


def _nbgrader_meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def solution_code_cells(nb: nbformat.NotebookNode) -> list:
    """The code cells a student fills in (nbgrader ``solution: true``), in notebook order."""
    return [c for c in nb.cells if c.cell_type == "code" and _nbgrader_meta(c).get("solution")]


def strip_solution_markers(source: str) -> str:
    """Drop the ``### BEGIN/END SOLUTION`` lines, keeping the code between them."""
    return "\n".join(ln for ln in source.split("\n") if ln.strip() not in _SOLUTION_MARKERS)


def make_partial(release: nbformat.NotebookNode, solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The release notebook with only its FIRST solution code cell filled in from the solution.

    Cells are matched by nbgrader ``grade_id``; the solution markers are removed, as a student's
    code would not have them.
    """
    partial = copy.deepcopy(release)
    stubs = solution_code_cells(partial)
    if not stubs:
        raise ValueError("expected a release notebook with at least one solution code cell, got none")
    first = stubs[0]
    grade_id = _nbgrader_meta(first).get("grade_id")
    answers = {_nbgrader_meta(c).get("grade_id"): c for c in solution_code_cells(solution)}
    if grade_id not in answers:
        raise ValueError(f"expected the solution notebook to hold solution cell {grade_id!r}, "
                         f"it has {sorted(map(str, answers))}")
    first.source = strip_solution_markers(answers[grade_id].source)
    return partial


def submit(course: Path | str, student: str, lab: str, nb: nbformat.NotebookNode | Path | str | bytes) -> Path:
    """Place a notebook as ``grading/submitted/<student>/<lab>/<lab>.ipynb`` of the course.

    ``nb`` is a notebook, the path of one, or ``bytes`` written as they are (a hand-in that is not
    a valid notebook, as a student may upload)."""
    dest = course_dir(course, "submitted") / student / lab / f"{lab}.ipynb"
    dest.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(nb, bytes):
        dest.write_bytes(nb)
        return dest
    if not isinstance(nb, nbformat.NotebookNode):
        nb = read_notebook(nb)
    nbformat.write(nb, str(dest))
    return dest


def cell_by_id(nb: nbformat.NotebookNode, grade_id: str):
    """The one cell of ``nb`` whose nbgrader ``grade_id`` is ``grade_id`` (a ValueError otherwise)."""
    cells = [c for c in nb.cells if _nbgrader_meta(c).get("grade_id") == grade_id]
    if len(cells) != 1:
        raise ValueError(f"expected one cell with grade_id {grade_id!r}, found {len(cells)}")
    return cells[0]


# ---------------------------------------------------------------------------------------- scores
@dataclasses.dataclass(frozen=True)
class CellGrade:
    """One graded cell of a submission, as stored in the gradebook."""
    name: str                    # grade_id
    cell_type: str               # "code" (autograded test) or "markdown" (written answer)
    max_score: float
    auto_score: float | None     # None while never autograded (written answers)
    manual_score: float | None   # set by an instructor
    needs_manual_grade: bool


@dataclasses.dataclass(frozen=True)
class LabScore:
    """Scores of one student's submission of one lab, read from the gradebook.

    ``auto_score``/``max_auto_score`` cover the autograded test cells (code grade cells);
    ``manual_score`` the written answers (markdown grade cells) graded so far (an unchanged
    "YOUR ANSWER HERE" gets 0 from nbgrader itself); ``manual_pending`` the points of cells
    that still wait for an instructor (no manual score yet).
    ``score`` is nbgrader's total (manual grades take precedence over automatic ones).
    """
    student: str
    lab: str
    auto_score: float
    max_auto_score: float
    manual_score: float
    max_manual_score: float
    manual_pending: float
    score: float
    max_score: float
    grades: tuple[CellGrade, ...]


def read_scores(course: Path | str, lab: str, student: str, *, db_url: str | None = None,
                gradebook=None) -> LabScore:
    """The gradebook's scores for ``student``'s submission of ``lab`` (the course's gradebook, the
    one at ``db_url``, or ``gradebook``, an open nbgrader Gradebook).

    Raises:
        KeyError: the gradebook has no such submission (never autograded).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if gradebook is not None:
            return _lab_score(gradebook, lab, student)
        with _gradebook(course, db_url) as gb:
            return _lab_score(gb, lab, student)


def _lab_score(gb, lab: str, student: str) -> LabScore:
    from nbgrader.api import MissingEntry

    try:
        sub = gb.find_submission(lab, student)
    except MissingEntry:
        raise KeyError(f"no submission of {lab!r} by {student!r} in the gradebook") from None
    grades = tuple(
        CellGrade(name=g.name, cell_type=g.cell_type, max_score=float(g.max_score),
                  auto_score=g.auto_score, manual_score=g.manual_score,
                  needs_manual_grade=bool(g.needs_manual_grade))
        for nb in sub.notebooks for g in nb.grades)
    score, max_score = float(sub.score), float(sub.max_score)
    code = [g for g in grades if g.cell_type == "code"]
    written = [g for g in grades if g.cell_type != "code"]
    return LabScore(
        student=student, lab=lab,
        auto_score=sum(g.auto_score or 0.0 for g in code),
        max_auto_score=sum(g.max_score for g in code),
        manual_score=sum(g.manual_score if g.manual_score is not None
                         else 0.0 if g.needs_manual_grade else (g.auto_score or 0.0) for g in written),
        max_manual_score=sum(g.max_score for g in written),
        # Re-autograding flags answers again but keeps an instructor's manual_score: not pending.
        manual_pending=sum(g.max_score for g in grades if g.needs_manual_grade and g.manual_score is None),
        score=score, max_score=max_score, grades=grades)


def read_max_scores(course: Path | str, lab: str) -> tuple[float, float]:
    """``(max score, max automatic score)`` of ``lab`` as the gradebook records it.

    The automatic maximum covers the autograded test cells (nbgrader's ``max_code_score``).

    Raises:
        KeyError: the gradebook has no such assignment (``generate_assignment`` never ran for it).
    """
    from nbgrader.api import MissingEntry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _gradebook(course) as gb:
            try:
                assignment = gb.find_assignment(lab)
            except MissingEntry:
                raise KeyError(f"no assignment {lab!r} in the gradebook") from None
            return float(assignment.max_score), float(assignment.max_code_score)


def set_manual_full_marks(course: Path | str, lab: str, student: str) -> None:
    """Give every cell of the submission that needs a manual grade its full points, as an
    instructor would in the formgrader (sets ``manual_score`` and clears ``needs_manual_grade``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _gradebook(course) as gb:
            sub = gb.find_submission(lab, student)
            for nb in sub.notebooks:
                for g in nb.grades:
                    if g.needs_manual_grade:
                        g.manual_score = g.max_score
                        g.needs_manual_grade = False
            gb.db.commit()


# ------------------------------------------------------------------------------------ check_lab
@dataclasses.dataclass
class CheckResult:
    """What :func:`check_lab` found: scores per submission and the violated expectations."""
    lab: str
    course: Path
    scores: dict[str, LabScore]
    problems: list[str]
    autograde_seconds: float
    student_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # approximate
    log: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def expectations(scores: dict[str, LabScore]) -> list[str]:
    """Problems with the three check submissions: solution == max auto, release == 0,
    0 < partial < max auto."""
    problems = []
    for name in CHECK_STUDENTS:
        if name not in scores:
            problems.append(f"{name}: no score in the gradebook (autograde failed?)")
    if problems:
        return problems
    sol, rel, par = (scores[n] for n in CHECK_STUDENTS)
    if sol.max_auto_score <= 0:
        problems.append("the notebook has no autograded points")
    if sol.auto_score != sol.max_auto_score:
        failed = [g.name for g in sol.grades if g.cell_type == "code" and (g.auto_score or 0) < g.max_score]
        problems.append(f"solution scores {sol.auto_score:g}/{sol.max_auto_score:g} automatic points "
                        f"(failing: {', '.join(failed)})")
    if rel.auto_score != 0:
        passed = [g.name for g in rel.grades if g.cell_type == "code" and (g.auto_score or 0) > 0]
        problems.append(f"release scores {rel.auto_score:g} automatic points, expected 0 "
                        f"(passing on the stubs: {', '.join(passed)})")
    if not 0 < par.auto_score < par.max_auto_score:
        problems.append(f"partial scores {par.auto_score:g}/{par.max_auto_score:g}, expected strictly "
                        "between 0 and the maximum")
    return problems


def check_lab(lab: str, *, workdir: Path | str, source: Path | str = ROOT,
              cell_timeout: int | None = None, timeout: float | None = None,
              progress: Callable[[str], None] | None = None) -> CheckResult:
    """Release ``lab`` and autograde its solution, its release and a partial submission.

    In ``workdir`` (a new or empty folder) a copy of the course is made
    (:func:`make_course`), ``nbgrader generate_assignment`` releases the lab, the three notebooks
    are submitted as students ``solution``, ``release`` and ``partial``
    (:func:`make_partial`), and one ``nbgrader autograde`` call grades them.

    Args:
        cell_timeout: per-cell limit (``--Execute.timeout``); the course config's by default.
        timeout: wall-clock limit of the autograde call (:class:`subprocess.TimeoutExpired`).
        progress: called with a line before each step.
    """
    say = progress or (lambda msg: None)
    course = make_course(workdir, [lab], source=source)
    say(f"nbgrader generate_assignment {lab} in {course}")
    release_path = generate_assignment(course, lab)
    solution = read_notebook(course / "solutions" / lab / f"{lab}.ipynb")
    release = read_notebook(release_path)
    submit(course, "solution", lab, solution)
    submit(course, "release", lab, release)
    submit(course, "partial", lab, make_partial(release, solution))
    limit = f"--Execute.timeout={cell_timeout}" if cell_timeout else "the config's Execute.timeout"
    say(f"nbgrader autograde {lab} for {', '.join(CHECK_STUDENTS)} ({limit})")
    start, wall_start = time.perf_counter(), time.time()
    proc = autograde(course, lab, cell_timeout=cell_timeout, timeout=timeout)
    seconds = time.perf_counter() - start
    # nbgrader grades the students one after the other and writes each autograded notebook at
    # the end: consecutive modification times give each submission's time.
    done = {}
    for student in CHECK_STUDENTS:
        path = course_dir(course, "autograded") / student / lab / f"{lab}.ipynb"
        if path.is_file():
            done[student] = path.stat().st_mtime
    student_seconds, previous = {}, wall_start
    for student, mtime in sorted(done.items(), key=lambda kv: kv[1]):
        student_seconds[student], previous = mtime - previous, mtime
    scores = {}
    for student in CHECK_STUDENTS:
        try:
            scores[student] = read_scores(course, lab, student)
        except KeyError:
            pass
    problems = expectations(scores)
    if problems and proc.returncode != 0:
        problems.append(f"nbgrader autograde exited with {proc.returncode}:\n{_tail(proc.stdout)}")
    return CheckResult(lab=lab, course=course, scores=scores, problems=problems,
                       autograde_seconds=seconds, student_seconds=student_seconds, log=proc.stdout)


# ---------------------------------------------------------------------------------------- output
def format_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table of ``rows`` under ``header`` (floats shown with %g): labkit's one
    table formatter, :func:`labkit.plots.format_table`, in its text style."""
    from labkit.plots import format_table as _format

    header = [str(h) for h in header]
    records = [dict(zip(header, row)) for row in rows]
    if not records:
        return "  ".join(header)
    return _format(records, columns=header, floatfmt="g", style="text")


def write_grades_csv(path: Path | str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for row in rows:
            w.writerow([f"{v:g}" if isinstance(v, float) else v for v in row])
    return path
