"""Class-scale grading (coursetools/parallel.py, `mlsec-grade --workers/--scheduler`): real nbgrader,
real Dask distributed, on the fixture course (tests/fixtures/course, lab "demo": two autograded
tasks of 10 points with hidden tests, one written answer of 5).

The same submissions are graded with one worker and with two: grades.csv and the gradebook must be
the same, row for row and cell by cell. Then the faults: a worker killed mid-task, a run
interrupted and started again, a resubmission, a worker that runs other code.
"""
import copy
import csv
import hashlib
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coursetools import nbgrading, parallel

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
CELL_TIMEOUT = 5


def _solution():
    return nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")


def _submissions():
    """Student -> notebook (or raw bytes): correct, looping, kernel-killing, raising, blank, not a notebook."""
    sol = _solution()
    bob = copy.deepcopy(sol)
    nbgrading.cell_by_id(bob, "add").source = "while True:\n    pass\n" + nbgrading.cell_by_id(bob, "add").source
    carol = copy.deepcopy(sol)
    nbgrading.cell_by_id(carol, "mean").source = "import os\nos._exit(1)"
    dave = copy.deepcopy(sol)
    nbgrading.cell_by_id(dave, "mean").source = "raise RuntimeError('dave broke it')"
    erin = copy.deepcopy(sol)
    for c in nbgrading.solution_code_cells(erin):
        c.source = "# YOUR CODE HERE\nraise NotImplementedError()"
    return {"alice": sol, "bob": bob, "carol": carol, "dave": dave, "erin": erin, "hank": b"{ not a notebook"}


def _course(path: Path, students=None) -> Path:
    course = nbgrading.make_course(path, [LAB], source=FIXTURE)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write(f"\nc.Execute.timeout = {CELL_TIMEOUT}\n")
    for student, nb in _submissions().items():
        if students is not None and student not in students:
            continue
        nbgrading.submit(course, student, LAB, nb)
    return course


def _grade(course: Path, *args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRADE), "--course", str(course), "--dashboard", ":0", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _csv(course: Path) -> list[dict]:
    with open(course / "grading" / "grades.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cells(course: Path) -> dict:
    from nbgrader.api import Gradebook

    with Gradebook(nbgrading.gradebook_url(course), "mlsec") as gb:
        return {sub.student.id: sorted((nb.name, g.name, g.auto_score, g.needs_manual_grade)
                                       for nb in sub.notebooks for g in nb.grades)
                for sub in gb.assignment_submissions(LAB)}


def _visible_text(path: Path) -> str:
    """The text a reader of an HTML page sees (tags stripped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def _manifest(course: Path) -> list[dict]:
    import json

    path = course / "grading" / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ------------------------------------------------------------------------- fast: no nbgrader
def test_hashes_follow_content(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    (a / "lab.ipynb").write_text("one")
    first = parallel.submission_hash(a)
    assert parallel.submission_hash(a) == first
    (a / "lab.ipynb").write_text("two")
    assert parallel.submission_hash(a) != first
    (a / ".ipynb_checkpoints").mkdir()
    (a / ".ipynb_checkpoints" / "x").write_text("cache")
    assert parallel.submission_hash(a) == parallel._digest({"lab.ipynb": b"two"})

    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    code = parallel.code_version()
    v = parallel.lab_version(course, LAB, code)
    assert parallel.lab_version(course, LAB, code) == v and parallel.lab_version(course, LAB, "other code") != v
    with open(course / "solutions" / LAB / f"{LAB}.ipynb", "a") as fh:
        fh.write("\n")
    assert parallel.lab_version(course, LAB, code) != v


def test_manifest_says_what_is_current(tmp_path):
    m = parallel.Manifest(tmp_path / "manifest.jsonl")
    opts = {"cell_timeout": None, "sandboxed": True, "feedback": True}
    result = parallel.Result("alice", LAB, digest="d1", version="v1", status="ok", seconds=1.0, log="",
                             entry=None, autograded={}, feedback={})
    m.record(result, opts)
    (tmp_path / "manifest.jsonl").open("a").write("not json\n")
    again = parallel.Manifest(tmp_path / "manifest.jsonl")  # read back, the broken line skipped
    assert again.current("alice", LAB, digest="d1", version="v1", options=opts)["status"] == "ok"
    assert again.current("alice", LAB, digest="d2", version="v1", options=opts) is None  # resubmitted
    assert again.current("alice", LAB, digest="d1", version="v2", options=opts) is None  # the lab changed
    assert again.current("alice", LAB, digest="d1", version="v1", options={**opts, "cell_timeout": 9}) is None
    assert again.current("alice", LAB, digest="d1", version="v1", options={**opts, "feedback": False})  # has it
    assert again.current("bob", LAB, digest="d1", version="v1", options=opts) is None


def test_worker_with_other_code_refuses_the_task():
    bundle = parallel.LabBundle(lab=LAB, version="v", code_version="0" * 64, course_id="mlsec", files={}, gradebook=b"")
    task = parallel.Task("alice", LAB, files={}, digest="d", cell_timeout=5, submission_timeout=60,
                         feedback=False, sandboxed=False)
    with pytest.raises(parallel.WorkerRefused, match="runs other grading code .* than the client"):
        parallel.grade_submission(task, bundle)


def test_results_cannot_write_outside_their_folder(tmp_path):
    with pytest.raises(ValueError, match="relative path inside"):
        parallel._write_tree(tmp_path / "dest", {"../escape.txt": b"x"})
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "expected a number of worker processes >= 1, got 0"),
    (["--scheduler", "host:8786"], "expected an address like tcp://host:8786"),
    (["--workers", "2", "--scheduler", "tcp://h:8786"], "--workers sizes a local cluster"),
])
def test_grade_rejects_bad_cluster_options(tmp_path, args, message):
    proc = _grade(tmp_path, *args, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr


# ------------------------------------------------------------------ slow: real nbgrader + Dask
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same six submissions graded with one worker and with two."""
    base = tmp_path_factory.mktemp("parallel")
    out = {}
    for workers in (1, 2):
        course = _course(base / f"w{workers}")
        before = _digest(nbgrading.course_dir(course, "submitted"))
        start = time.perf_counter()
        proc = _grade(course, "--workers", str(workers))
        out[workers] = dict(course=course, proc=proc, seconds=time.perf_counter() - start, before=before,
                            after=_digest(nbgrading.course_dir(course, "submitted")))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.slow
def test_parallel_grades_equal_sequential_row_for_row(runs):
    one, two = runs[1]["course"], runs[2]["course"]
    assert (one / "grading" / "grades.csv").read_text() == (two / "grading" / "grades.csv").read_text()
    assert _cells(one) == _cells(two)
    rows = {r["student"]: r for r in _csv(two)}
    assert sorted(rows) == ["alice", "bob", "carol", "dave", "erin", "hank"]
    auto = {s: float(r["auto_score"]) for s, r in rows.items()}
    assert auto == {"alice": 20, "bob": 10, "carol": 10, "dave": 10, "erin": 0, "hank": 0}
    assert rows["bob"]["status"] == "ok"  # the loop cost bob's task 1 (cell timeout), not the batch
    assert rows["carol"]["status"].startswith("stopped: cell mean:"), rows["carol"]  # task 1 kept its points
    assert rows["hank"]["status"].startswith("failed"), rows["hank"]


@pytest.mark.slow
def test_results_land_in_the_course_and_submissions_are_untouched(runs):
    for run in runs.values():
        course = run["course"]
        assert run["before"] == run["after"] and len(run["before"]) == 6
        for student in ("alice", "bob", "dave", "erin"):
            assert (course / "grading" / "autograded" / student / LAB / f"{LAB}.ipynb").is_file()
            html = _visible_text(course / "grading" / "feedback" / student / LAB / f"{LAB}.html")
            assert "add(1, 2) == 3" in html and "hidden-check" not in html and "add(-7, 12)" not in html
        assert not (course / "grading" / "feedback" / "hank").exists()
        log = (course / "grading" / "logs" / f"bob__{LAB}.log").read_text()
        assert f"Timeout waiting for execute reply ({CELL_TIMEOUT}s)" in log
        assert {(e["student"], e["status"].split(":")[0]) for e in _manifest(course)} == {
            ("alice", "ok"), ("bob", "ok"), ("carol", "stopped"), ("dave", "ok"), ("erin", "ok"), ("hank", "failed")}


@pytest.mark.slow
def test_progress_bar_and_dashboard_link(runs):
    proc = runs[2]["proc"]
    assert "Dask LocalCluster: 2 worker(s); dashboard http://" in proc.stdout
    final = proc.stderr.replace("\r", "\n").strip().splitlines()
    assert any("6/6" in line and "done 6, running 0, failed 2" in line for line in final), proc.stderr[-600:]


@pytest.mark.slow
def test_rerun_grades_only_what_changed(runs):
    """Runs after the tests above (it changes the two-worker course)."""
    course = runs[2]["course"]
    reference = (course / "grading" / "grades.csv").read_text()
    again = _grade(course, "--workers", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "grading 0 submission(s)" in again.stdout and "6 unchanged since the last run" in again.stdout
    assert "LocalCluster" not in again.stdout  # nothing to do: no cluster started
    assert (course / "grading" / "grades.csv").read_text() == reference
    # dave hands in a fixed notebook: only dave is graded again
    nbgrading.submit(course, "dave", LAB, _solution())
    fixed = _grade(course, "--workers", "2")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "grading 1 submission(s) of 1 student(s)" in fixed.stdout
    rows = {r["student"]: r for r in _csv(course)}
    old = {r["student"]: r for r in csv.DictReader(reference.splitlines())}
    assert float(rows["dave"]["auto_score"]) == 20
    assert {s: r for s, r in rows.items() if s != "dave"} == {s: r for s, r in old.items() if s != "dave"}


@pytest.mark.slow
def test_interrupted_run_resumes_with_what_is_missing(tmp_path):
    course = _course(tmp_path / "course", students=("alice", "dave", "erin"))
    proc = subprocess.Popen([str(GRADE), "--course", str(course), "--workers", "1", "--dashboard", ":0", "--no-feedback"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    while not _manifest(course) and time.monotonic() < deadline:  # the first result is written
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # as `timeout` or Ctrl-C would
    proc.communicate(timeout=120)
    done = {e["student"] for e in _manifest(course)}
    assert 1 <= len(done) < 3
    assert not (course / "grading" / "grades.csv").exists()
    resumed = _grade(course, "--workers", "1", "--no-feedback")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"grading {3 - len(done)} submission(s)" in resumed.stdout
    assert f"{len(done)} unchanged since the last run" in resumed.stdout
    graded = [e["student"] for e in _manifest(course)]
    assert sorted(graded) == ["alice", "dave", "erin"]  # each graded exactly once
    auto = {r["student"]: float(r["auto_score"]) for r in _csv(course)}
    assert auto == {"alice": 20, "dave": 10, "erin": 0}


@pytest.mark.slow
def test_killed_worker_loses_nothing(tmp_path, runs):
    from distributed import Client, LocalCluster

    course = _course(tmp_path / "course", students=("alice", "bob", "dave"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, scheduler_port=0,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        proc = subprocess.Popen([str(GRADE), "--course", str(course), "--scheduler", cluster.scheduler_address],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        victim, key, deadline = None, None, time.monotonic() + 300
        while victim is None and time.monotonic() < deadline:
            for worker, keys in client.processing().items():
                busy = [k for k in keys if str(k).startswith("grade-")]
                if busy and worker in pids:
                    victim, key = worker, busy[0]
                    break
            time.sleep(0.2)
        assert victim is not None, "no grading task started"
        time.sleep(1.5)  # let its nbgrader get going
        os.kill(pids[victim], signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    # the killed worker's task was graded elsewhere, and every row is what a clean run gives
    student = str(key).split("-")[2]
    (entry,) = [e for e in _manifest(course) if e["student"] == student]
    assert entry["worker"] != victim and entry["status"] == "ok"
    reference = {r["student"]: r for r in _csv(runs[1]["course"])}
    assert {r["student"]: r for r in _csv(course)} == {s: reference[s] for s in ("alice", "bob", "dave")}


@pytest.mark.slow
def test_worker_running_other_code_is_refused(tmp_path):
    """A `dask worker` whose labkit differs from the client's (one comment added) refuses to grade."""
    from distributed import LocalCluster

    import labkit

    shadow = tmp_path / "shadow"
    shutil.copytree(Path(labkit.__file__).parent, shadow / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    with open(shadow / "labkit" / "utils.py", "a") as fh:
        fh.write("\n# a worker on another commit\n")
    course = _course(tmp_path / "course", students=("alice",))
    before = _digest(nbgrading.course_dir(course, "submitted"))
    with LocalCluster(n_workers=0, scheduler_port=0, dashboard_address=":0") as cluster:
        env = {**os.environ, "PYTHONPATH": str(shadow)}
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address,
                                   "--nthreads", "1", "--no-nanny", "--no-dashboard"],
                                  env=env, cwd=tmp_path,  # `python -m` puts the cwd first on the path
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc = _grade(course, "--scheduler", cluster.scheduler_address, timeout=300)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refusing to grade" in proc.stderr and "run other grading code than the client" in proc.stderr
    assert not (course / "grading" / "grades.csv").exists() and _manifest(course) == []
    assert _digest(nbgrading.course_dir(course, "submitted")) == before
