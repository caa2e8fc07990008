"""Grade a class in parallel on Dask distributed: one submission is one task, one place writes.

``mlsec-grade`` (:mod:`coursetools.grade`) uses this module; nothing here parses a command line.

* **A task** (:func:`grade_submission`) is one (student, lab): the submission's files and the lab's
  :class:`LabBundle` go in; a :class:`Result` comes out: status, log, the gradebook entries
  nbgrader computed, the autograded notebook and the feedback HTML. The worker builds a throwaway
  course in its scratch folder (the course config, ``solutions/<lab>/``, the submission) with its
  **own SQLite gradebook** (a copy of the bundle's template), runs the real ``nbgrader autograde``
  and ``generate_feedback`` there, kernels in the bubblewrap sandbox as always, and deletes it.
  nbgrader never shares a gradebook or a course folder between two processes (its SQLite
  gradebook and folders are not safe for that), and nothing on the worker touches the course.
* **One writer.** Only the client (:func:`apply_result`, called as results arrive) writes the
  course gradebook (grading/gradebook.db or the PostgreSQL of ``MLSEC_GRADEBOOK_URL``) and
  grading/: the same rows whatever the number of workers or the order results arrive in.
* **Same course everywhere.** :func:`code_version` hashes the grading code a process would run
  (labkit and coursetools as installed there, nbgrader's version, Python's); the bundle carries
  the client's, and a worker whose code differs refuses the task (:class:`WorkerRefused`): a
  worker on another machine must run the client's commit. The lab's sources and config travel in
  the bundle, so they are the client's by construction; :func:`lab_version` combines them with
  the code version into the version recorded for each graded submission.
* **Faults.** A worker that dies mid-task loses nothing: its tasks are scheduled again on another
  worker (Dask keeps each task's inputs; results are written only when they arrive). nbgrader
  runs with ``PR_SET_PDEATHSIG``, so it dies with the worker. A task that raises is reported as a
  failed row, never stops the batch. :class:`Manifest` (grading/manifest.jsonl) records each
  written result with its submission hash and lab version, so that an interrupted run, started
  again, grades only what is missing or changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from . import nbgrading, sandbox

__all__ = ["WorkerRefused", "code_version", "lab_version", "submission_hash", "read_tree", "LabBundle",
           "make_bundle", "Task", "Result", "GradebookEntry", "grade_submission", "apply_result",
           "manual_grades", "Manifest", "cluster", "run_tasks", "default_workers"]

_SKIP = {".ipynb_checkpoints", "__pycache__", ".git"}
_LOG = logging.getLogger(__name__)


class WorkerRefused(RuntimeError):
    """A worker will not grade: it runs other grading code than the client, or cannot sandbox."""


# ------------------------------------------------------------------------------------ versions
def read_tree(folder: Path | str) -> dict[str, bytes]:
    """Every file under ``folder`` as ``{relative posix path: bytes}`` (caches skipped); {} when
    the folder does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not _SKIP.intersection(p.relative_to(folder).parts)}


def _digest(files: dict[str, bytes], *extra: str) -> str:
    h = hashlib.sha256()
    for part in extra:
        h.update(part.encode() + b"\0")
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()




def code_version() -> str:
    """Content hash of the grading code this process runs: the Python sources of labkit and of
    every coursetools module (as imported here, read from disk now), nbgrader's version and
    Python's."""
    import importlib.util

    import nbgrader

    files = {}
    spec = importlib.util.find_spec("labkit")  # found, not imported (that would load torch)
    if spec is None or spec.origin is None:
        raise RuntimeError("labkit is not installed in this environment (pip install -e . in the course)")
    lab_root = Path(spec.origin).resolve().parent
    files.update({f"labkit/{k}": v for k, v in read_tree(lab_root).items() if k.endswith(".py")})
    tools = Path(__file__).resolve().parent
    # every module of coursetools: grading loads most of them (the sandbox, the checks, the edition's
    # labkit for the kernel, the feedback and integrity preprocessors), and a hand-kept list drifts
    files.update({f"coursetools/{p.name}": p.read_bytes() for p in sorted(tools.glob("*.py"))})
    return _digest(files, f"nbgrader {nbgrader.__version__}", f"python {sys.version_info[0]}.{sys.version_info[1]}")


def lab_version(course: Path | str, lab: str, code: str | None = None) -> str:
    """The version a lab is graded at: the code version, the course config and solutions/<lab>."""
    course = Path(course)
    files = {"nbgrader_config.py": (course / "nbgrader_config.py").read_bytes()}
    files.update({f"solutions/{lab}/{k}": v for k, v in read_tree(course / "solutions" / lab).items()})
    return _digest(files, code or code_version())


def submission_hash(folder: Path | str) -> str:
    """Content hash of a submission folder (grading/submitted/<student>/<lab>/)."""
    return _digest(read_tree(folder))


# --------------------------------------------------------------------------------------- bundle
@dataclasses.dataclass(frozen=True)
class LabBundle:
    """What every task of one lab needs, shipped to the workers once per lab."""
    lab: str
    version: str                 # lab_version
    code_version: str            # the client's code_version: a worker must run the same
    course_id: str
    files: dict[str, bytes]      # nbgrader_config.py and solutions/<lab>/..., relative to the course root
    gradebook: bytes             # a SQLite gradebook holding the lab (generate_assignment), no student


def make_bundle(course: Path | str, lab: str, *, code: str | None = None) -> LabBundle:
    """Build the bundle of ``lab``: its files and a template gradebook made by the real
    ``nbgrader generate_assignment`` in a throwaway copy of the course (the course is not touched)."""
    course = Path(course)
    code = code or code_version()
    with tempfile.TemporaryDirectory(prefix=f"bundle-{lab}-") as tmp:
        copy = nbgrading.make_course(Path(tmp) / "course", [lab], source=course,
                                     config=course / "nbgrader_config.py")
        db = Path(tmp) / "template.db"
        nbgrading.run_nbgrader(copy, "generate_assignment", lab, "--force",
                               f"--CourseDirectory.release_directory={Path(tmp) / 'release'}",
                               f"--CourseDirectory.db_url=sqlite:///{db}",
                               env={"MLSEC_GRADEBOOK_URL": None}, timeout=600)
        files = {"nbgrader_config.py": (copy / "nbgrader_config.py").read_bytes()}
        files.update({f"solutions/{lab}/{k}": v for k, v in read_tree(copy / "solutions" / lab).items()})
        return LabBundle(lab=lab, version=lab_version(course, lab, code), code_version=code,
                         course_id=nbgrading.course_config(course).CourseDirectory.course_id,
                         files=files, gradebook=db.read_bytes())


# ------------------------------------------------------------------------------------ the task
@dataclasses.dataclass(frozen=True)
class GradebookEntry:
    """What autograde stored for one submission, cell by cell (nbgrader's Grade and Comment rows).

    ``grades``: (notebook, cell, cell_type, auto_score); ``comments``: (notebook, cell, auto_comment);
    ``penalties``: notebook -> late_submission_penalty; ``timestamp``: the submission's, ISO or None.
    """
    grades: tuple[tuple[str, str, str, float | None], ...]
    comments: tuple[tuple[str, str, str | None], ...]
    penalties: tuple[tuple[str, float | None], ...]
    timestamp: str | None


@dataclasses.dataclass(frozen=True)
class Task:
    """One submission to grade, and how."""
    student: str
    lab: str
    files: dict[str, bytes]          # grading/submitted/<student>/<lab>/, relative paths
    digest: str                      # submission_hash of those files
    cell_timeout: int | None         # --Execute.timeout; None: the course config's
    submission_timeout: float        # wall-clock limit of the autograde call
    feedback: bool
    sandboxed: bool
    threads: int | None = None       # OMP/MKL threads of the kernel, unless the worker sets them
    # The instructor's grades already in the course gradebook, so that the feedback shows them:
    # (notebook, cell, manual_score, extra_credit) and (notebook, cell, manual_comment).
    manual_grades: tuple[tuple[str, str, float | None, float | None], ...] = ()
    manual_comments: tuple[tuple[str, str, str | None], ...] = ()


@dataclasses.dataclass(frozen=True)
class Result:
    """What a task sends back to the client."""
    student: str
    lab: str
    digest: str
    version: str
    status: str                      # ok | ok (feedback failed: ...) | limit: ... | stopped: ... | failed: ... | timed out ...
    seconds: float
    log: str
    entry: GradebookEntry | None     # None: nbgrader stored no submission (e.g. not a notebook)
    autograded: dict[str, bytes]
    feedback: dict[str, bytes]
    worker: str = ""

    @property
    def ok(self) -> bool:
        return self.status.startswith("ok")


def _worker_address() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _scratch() -> str | None:
    """The worker's local folder (Dask removes the folders of dead workers), else the temp folder."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    root = root.resolve()
    for name, data in files.items():
        dest = (root / name).resolve()
        if root not in dest.parents:
            raise ValueError(f"expected a relative path inside {root}, got {name!r}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


def _read_entry(db_url: str, course_id: str, lab: str, student: str) -> GradebookEntry | None:
    from nbgrader.api import Gradebook, MissingEntry

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(db_url, course_id) as gb:
            try:
                sub = gb.find_submission(lab, student)
            except MissingEntry:
                return None
            grades = tuple((nb.name, g.name, g.cell_type, g.auto_score) for nb in sub.notebooks for g in nb.grades)
            comments = tuple((nb.name, c.name, c.auto_comment) for nb in sub.notebooks for c in nb.comments)
            penalties = tuple((nb.name, nb.late_submission_penalty) for nb in sub.notebooks)
            stamp = sub.timestamp.isoformat() if sub.timestamp is not None else None
    return GradebookEntry(grades=grades, comments=comments, penalties=penalties, timestamp=stamp)


def _set_manual(db_url: str, course_id: str, task: Task) -> None:
    from nbgrader.api import Gradebook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Gradebook(db_url, course_id) as gb:
            for nb, cell, manual, extra in task.manual_grades:
                grade = gb.find_grade(cell, nb, task.lab, task.student)
                grade.manual_score, grade.extra_credit = manual, extra
                grade.needs_manual_grade = grade.auto_score is None and manual is None
            for nb, cell, text in task.manual_comments:
                gb.find_comment(cell, nb, task.lab, task.student).manual_comment = text
            gb.db.commit()


def check_worker(bundle: LabBundle, *, sandboxed: bool) -> None:
    """Raise :class:`WorkerRefused` unless this process runs the bundle's code and can sandbox."""
    mine = code_version()
    if mine != bundle.code_version:
        raise WorkerRefused(
            f"worker {_worker_address()} runs other grading code (version {mine[:12]}) than the client "
            f"({bundle.code_version[:12]}): check out the client's commit of the course (labkit, coursetools) "
            f"and the same nbgrader and Python on that worker, then restart it")
    if sandboxed:
        try:
            sandbox.check_available()
        except sandbox.SandboxUnavailable as err:
            raise WorkerRefused(f"worker {_worker_address()} cannot sandbox student code: {err}") from None


def grade_submission(task: Task, bundle: LabBundle) -> Result:
    """Grade one submission in a throwaway course with its own gradebook (runs on a worker).

    Raises:
        WorkerRefused: this worker's grading code differs from the client's, or it has no sandbox.
    """
    start = time.perf_counter()
    check_worker(bundle, sandboxed=task.sandboxed)
    env: dict[str, str | None] = {"MLSEC_GRADEBOOK_URL": None,  # never reachable from here
                                  "MLSEC_SANDBOX": "bwrap" if task.sandboxed else "off"}
    if task.threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            if name not in os.environ:
                env[name] = str(task.threads)
    with tempfile.TemporaryDirectory(prefix=f"grade-{task.lab}-", dir=_scratch()) as tmp:
        root = Path(tmp) / "course"
        _write_tree(root, bundle.files)
        db = Path(tmp) / "gradebook.db"
        db.write_bytes(bundle.gradebook)
        db_url = f"sqlite:///{db}"
        submitted = nbgrading.course_dir(root, "submitted") / task.student / task.lab
        submitted.mkdir(parents=True)
        _write_tree(submitted, task.files)
        run = dict(db_url=db_url, env=env, die_with_parent=True)
        try:
            proc = nbgrading.autograde(root, task.lab, student=task.student, cell_timeout=task.cell_timeout,
                                       timeout=task.submission_timeout, **run)
            log = proc.stdout or ""
            status = "ok" if proc.returncode == 0 else f"failed: {nbgrading.log_reason(log)}"
            if status == "ok" and (reason := _limit_reason(log)):
                # a limit of the sandbox, or a kernel that died: the cells before it kept their points
                status = f"{'limit' if 'limit' in reason or 'cut' in reason else 'stopped'}: {reason}"
        except subprocess.TimeoutExpired as err:
            log = err.output or ""
            log = log.decode(errors="replace") if isinstance(log, bytes) else log
            status = f"timed out after {task.submission_timeout:g} s (killed)"
        entry = _read_entry(db_url, bundle.course_id, task.lab, task.student)
        if status == "ok" and entry is not None and any(
                score is None for _, _, kind, score in entry.grades if kind == "code"):
            status = "failed: some tests were not run"
        if (status == "ok" or status.startswith(("limit: ", "stopped: "))) and task.feedback:
            if task.manual_grades or task.manual_comments:
                _set_manual(db_url, bundle.course_id, task)
            fb = nbgrading.generate_feedback(root, task.lab, student=task.student, check=False, **run)
            log += "\n---- generate_feedback ----\n" + (fb.stdout or "")
            if fb.returncode != 0:
                status = f"ok (feedback failed: {nbgrading.log_reason(fb.stdout or '')})"
        autograded = read_tree(nbgrading.course_dir(root, "autograded") / task.student / task.lab)
        feedback = read_tree(nbgrading.course_dir(root, "feedback") / task.student / task.lab) if task.feedback else {}
    return Result(student=task.student, lab=task.lab, digest=task.digest, version=bundle.version, status=status,
                  seconds=time.perf_counter() - start, log=log, entry=entry, autograded=autograded,
                  feedback=feedback, worker=_worker_address())


def _limit_reason(log: str) -> str | None:
    """The first limit of the sandbox a submission hit, as coursetools.sandbox.SandboxExecute logs it."""
    for line in log.splitlines():
        if "SandboxLimitError: " in line:
            return line.split("SandboxLimitError: ", 1)[1].strip()[:200]
    return None


# ------------------------------------------------------------------------- the one writer
def _replace_folder(dest: Path, files: dict[str, bytes]) -> None:
    """Make ``dest`` hold exactly ``files`` (written to a sibling first, then swapped in)."""
    if dest.exists():
        shutil.rmtree(dest)
    if files:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}")
        _write_tree(tmp, files)
        tmp.rename(dest)


def apply_result(course: Path | str, gb, result: Result) -> None:
    """Write one result into the course: the gradebook (through ``gb``, an open nbgrader
    Gradebook) and grading/autograded/ and grading/feedback/ of the submission.

    Like nbgrader's own autograde, an instructor's manual scores are kept, and a cell needs a
    manual grade when it has one or has no automatic score. The submission folder is only read."""
    from nbgrader.api import MissingEntry

    entry = result.entry
    if entry is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gb.update_or_create_student(result.student)
            try:
                gb.find_submission(result.lab, result.student)
            except MissingEntry:
                gb.add_submission(result.lab, result.student)
            sub = gb.find_submission(result.lab, result.student)
            sub.timestamp = datetime.datetime.fromisoformat(entry.timestamp) if entry.timestamp else None
            for nb, cell, _, score in entry.grades:
                grade = gb.find_grade(cell, nb, result.lab, result.student)
                grade.auto_score = score
                grade.needs_manual_grade = grade.manual_score is not None or score is None
            for nb, cell, text in entry.comments:
                gb.find_comment(cell, nb, result.lab, result.student).auto_comment = text
            for nb, penalty in entry.penalties:
                gb.find_submission_notebook(nb, result.lab, result.student).late_submission_penalty = penalty
            gb.db.commit()
    course = Path(course)
    _replace_folder(nbgrading.course_dir(course, "autograded") / result.student / result.lab, result.autograded)
    _replace_folder(nbgrading.course_dir(course, "feedback") / result.student / result.lab, result.feedback)


def manual_grades(gb, lab: str, student: str) -> dict:
    """The instructor's grades of a submission in the course gradebook, as :class:`Task` fields."""
    from nbgrader.api import MissingEntry

    try:
        sub = gb.find_submission(lab, student)
    except MissingEntry:
        return {}
    grades = tuple((nb.name, g.name, g.manual_score, g.extra_credit) for nb in sub.notebooks for g in nb.grades
                   if g.manual_score is not None or g.extra_credit is not None)
    comments = tuple((nb.name, c.name, c.manual_comment) for nb in sub.notebooks for c in nb.comments
                     if c.manual_comment is not None)
    return {"manual_grades": grades, "manual_comments": comments}


# ------------------------------------------------------------------------------- the manifest
class Manifest:
    """grading/manifest.jsonl: one line per result written to the course, the last one counting.

    A line holds the student, the lab, the submission's hash, the lab version it was graded at,
    the options that change a grade (cell timeout, sandbox, feedback) and the status. Appended and
    flushed after the gradebook commit, so an interrupted run leaves no line for what it lost."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.entries: dict[tuple[str, str], dict] = {}
        if self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    entry = json.loads(line)
                    self.entries[entry["student"], entry["lab"]] = entry
                except (ValueError, KeyError, TypeError):
                    print(f"warning: {self.path}:{n} is not a manifest entry; ignored", file=sys.stderr)

    def current(self, student: str, lab: str, *, digest: str, version: str, options: dict) -> dict | None:
        """The entry when this submission was graded with this version and options, else None."""
        entry = self.entries.get((student, lab))
        if entry is None or entry.get("submission") != digest or entry.get("version") != version:
            return None
        done = entry.get("options", {})
        if any(done.get(k) != v for k, v in options.items() if k != "feedback"):
            return None
        if options.get("feedback") and not done.get("feedback"):
            return None
        return entry

    def record(self, result: Result, options: dict) -> None:
        entry = {"student": result.student, "lab": result.lab, "submission": result.digest,
                 "version": result.version, "options": options, "status": result.status,
                 "seconds": round(result.seconds, 2), "worker": result.worker,
                 "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.entries[result.student, result.lab] = entry


# ----------------------------------------------------------------------------- the cluster
def default_workers() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def cluster(*, workers: int | None = None, scheduler: str | None = None,
            dashboard: str = ":8787", say: Callable[[str], None] = print) -> Iterator:
    """A Dask client: on a new ``LocalCluster`` of ``workers`` one-thread worker processes, or on the
    existing cluster at ``scheduler`` (``tcp://host:8786``). Prints the dashboard link."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as err:
            raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler} (expected a running "
                               f"`dask scheduler`, address like tcp://host:8786): {err}") from None
        with client:
            try:
                client.wait_for_workers(1, timeout=120)
            except TimeoutError:
                raise RuntimeError(f"no Dask worker joined the scheduler at {scheduler} within 120 s") from None
            say(f"Dask cluster {scheduler}: {len(client.scheduler_info(n_workers=-1)['workers'])} worker(s); "
                f"dashboard {client.dashboard_link}")
            yield client
        return
    n = workers or default_workers()
    if n < 1:
        raise ValueError(f"expected at least 1 worker, got {n}")
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, scheduler_port=0,
                      dashboard_address=dashboard, silence_logs=logging.ERROR) as local, Client(local) as client:
        say(f"Dask LocalCluster: {n} worker(s); dashboard {client.dashboard_link}")
        yield client


def run_tasks(client, tasks: list[Task], bundles: dict[str, LabBundle], on_result: Callable[[Result], None],
              *, progress: bool = True) -> None:
    """Run ``tasks`` on the cluster and hand each :class:`Result` to ``on_result`` as it arrives
    (in the calling thread: the one writer). A task that raises becomes a failed result; a
    :class:`WorkerRefused` cancels the batch and is raised. Shows a progress bar with done /
    running / failed counts and the time left."""
    from distributed import wait
    from tqdm.auto import tqdm

    if not tasks:
        return
    versions = client.run(code_version)
    wrong = {w: v for w, v in versions.items() if v != next(iter(bundles.values())).code_version}
    if wrong:
        first = next(iter(bundles.values())).code_version
        raise WorkerRefused("worker(s) " + ", ".join(f"{w} (version {v[:12]})" for w, v in sorted(wrong.items()))
                            + f" run other grading code than the client ({first[:12]}): check out the client's "
                            "commit of the course (labkit, coursetools), nbgrader and Python there, then restart them")
    run = uuid.uuid4().hex[:8]
    # A bundle is a task's result rather than scattered data: Dask can compute it again when the
    # worker holding it dies.
    shipped = {lab: client.submit(_identity, bundle, key=f"bundle-{lab}-{run}", pure=False)
               for lab, bundle in bundles.items()}
    futures = {client.submit(grade_submission, task, shipped[task.lab], pure=False,
                             key=f"grade-{task.lab}-{task.student}-{run}"): task for task in tasks}
    keys = {f.key for f in futures}
    pending, failed, running = set(futures), 0, 0
    bar = tqdm(total=len(futures), unit="submission", desc="grading", disable=not progress,
               file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
    try:
        while pending:
            try:
                done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                task = futures[future]
                try:
                    result = future.result()
                except WorkerRefused:
                    raise
                except Exception as err:  # KilledWorker, a bug: the row says so, the batch goes on
                    result = Result(student=task.student, lab=task.lab, digest=task.digest, version="",
                                    status=f"failed: grading task crashed ({type(err).__name__}: {str(err)[:120]})",
                                    seconds=0.0, log=repr(err), entry=None, autograded={}, feedback={})
                failed += not result.ok
                on_result(result)
                bar.set_postfix_str(f"done {bar.n + 1}, running {running}, failed {failed}", refresh=False)
                bar.update(1)
            try:
                # tasks on workers, at most one per worker thread (a worker holds a few in its queue)
                assigned = sum(k in keys for ks in client.processing().values() for k in ks)
                running = min(assigned, sum(client.nthreads().values()))
            except Exception:  # the scheduler is busy or gone: the counts wait for the next round
                pass
            bar.set_postfix_str(f"done {bar.n}, running {running}, failed {failed}")
    finally:
        bar.close()
        client.cancel(list(pending) + list(shipped.values()))


def _identity(x):
    return x
