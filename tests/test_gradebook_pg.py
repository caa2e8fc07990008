"""The PostgreSQL gradebook: nbgrader_config.py takes MLSEC_GRADEBOOK_URL for the gradebook, and
`mlsec-grade` (and nbgrader's own commands, as formgrader) write and read it there.

A real PostgreSQL server (Debian's `postgresql`; .ci/run installs it) is started by a session
fixture: initdb into a temporary folder, pg_ctl start on a free loopback port (as the `postgres`
user when the tests run as root, since initdb refuses root), stopped at the end. The end-to-end
test grades the same submissions of the fixture course (tests/fixtures/course, lab "demo") once
with the SQLite default and once with PostgreSQL, and compares the gradebooks cell by cell through
nbgrader's Gradebook API.
"""
import copy
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from coursetools import nbgrading

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
CELL_TIMEOUT = 5


def _pg_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's /usr/lib/postgresql/<version>/bin (newest), or PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server on 127.0.0.1 with an empty database; yields its URL."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's `postgresql` "
                    "(apt-get install postgresql; .ci/run does)")
    import psycopg

    root = Path(tempfile.mkdtemp(prefix="mlsec-pg-"))
    prefix = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as an ordinary user
        user = "postgres" if _has_user("postgres") else "nobody"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", user, "--"]
    port = _free_port()
    data = root / "data"

    def pg(*args):
        return subprocess.run([*prefix, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=root)

    init = pg(bindir / "initdb", "-D", data, "-A", "trust", "-U", "mlsec", "-E", "UTF8", "--no-sync")
    assert init.returncode == 0, init.stdout + init.stderr
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -F"
    start = pg(bindir / "pg_ctl", "-D", data, "-o", opts, "-l", root / "server.log", "-w", "-t", "60", "start")
    assert start.returncode == 0, start.stdout + start.stderr + (root / "server.log").read_text(errors="replace")
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="mlsec", dbname="postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE gradebook")
        yield f"postgresql://mlsec@127.0.0.1:{port}/gradebook"
    finally:
        pg(bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ----------------------------------------------------------------------------- fast: config
def test_config_takes_the_gradebook_url_from_the_environment(monkeypatch):
    url = "postgresql://grader@127.0.0.1:5432/gradebook"
    monkeypatch.setenv("MLSEC_GRADEBOOK_URL", url)
    assert nbgrading.course_config(ROOT).CourseDirectory.db_url == url
    monkeypatch.delenv("MLSEC_GRADEBOOK_URL")
    assert nbgrading.course_config(ROOT).CourseDirectory.db_url == "sqlite:///" + str(ROOT / "grading" / "gradebook.db")
    monkeypatch.setenv("MLSEC_GRADEBOOK_URL", "  ")  # blank: the default
    assert nbgrading.course_config(ROOT).CourseDirectory.db_url.startswith("sqlite:///")


def test_grade_refuses_an_unreachable_gradebook_and_names_it(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    nbgrading.submit(course, "alice", LAB, FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    env = {**os.environ, "MLSEC_GRADEBOOK_URL": f"postgresql://grader:s3cret@127.0.0.1:{_free_port()}/gradebook"}
    proc = subprocess.run([str(GRADE), "--course", str(course)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert "cannot open the gradebook postgresql://grader:***@127.0.0.1" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout
    assert not (course / "grading" / "grades.csv").exists()


# -------------------------------------------------------------------- slow: real PostgreSQL
def _course(path: Path) -> Path:
    course = nbgrading.make_course(path, [LAB], source=FIXTURE)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write(f"\nc.Execute.timeout = {CELL_TIMEOUT}\n")
    sol = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    nbgrading.submit(course, "alice", LAB, sol)                          # all correct: 20
    dave = copy.deepcopy(sol)
    nbgrading.cell_by_id(dave, "mean").source = "raise RuntimeError('dave broke it')"  # task 2 lost: 10
    nbgrading.submit(course, "dave", LAB, dave)
    bad = nbgrading.course_dir(course, "submitted") / "hank" / LAB / f"{LAB}.ipynb"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not a notebook")                                  # failed: 0
    return course


def _cells(db_url: str) -> dict:
    """Every grade and comment of every submission, through nbgrader's Gradebook API."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(db_url, "mlsec") as gb:
        for sub in gb.assignment_submissions(LAB):
            out[sub.student.id] = {
                "score": sub.score, "code_score": sub.code_score,
                "grades": sorted((nb.name, g.name, g.auto_score, g.manual_score, g.needs_manual_grade)
                                 for nb in sub.notebooks for g in nb.grades),
                "comments": sorted((nb.name, c.name, c.auto_comment or "") for nb in sub.notebooks for c in nb.comments)}
    return out


@pytest.fixture(scope="module")
def both(tmp_path_factory, postgres):
    base = tmp_path_factory.mktemp("pg")
    runs = {}
    for name, url in (("sqlite", None), ("postgres", postgres)):
        course = _course(base / name)
        env = {k: v for k, v in os.environ.items() if k != "MLSEC_GRADEBOOK_URL"}
        if url:
            env["MLSEC_GRADEBOOK_URL"] = url
        proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--dashboard", ":0",
                               "--no-feedback"], capture_output=True, text=True, timeout=900, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[name] = dict(course=course, proc=proc, env=env, url=url or nbgrading.gradebook_url(course))
    return runs


@pytest.mark.slow
def test_postgres_gradebook_holds_the_same_grades_as_sqlite(both):
    pg, lite = both["postgres"], both["sqlite"]
    assert not (pg["course"] / "grading" / "gradebook.db").exists()  # nothing went to SQLite
    on_pg, on_sqlite = _cells(pg["url"]), _cells(lite["url"])
    assert sorted(on_pg) == ["alice", "dave", "hank"]
    assert on_pg == on_sqlite
    assert (on_pg["alice"]["code_score"], on_pg["dave"]["code_score"]) == (20, 10)
    assert (pg["course"] / "grading" / "grades.csv").read_text() == (lite["course"] / "grading" / "grades.csv").read_text()


@pytest.mark.slow
def test_nbgrader_commands_read_the_postgres_gradebook(both, monkeypatch):
    """nbgrader's own apps (formgrader among them) load the same config: they see the students."""
    pg = both["postgres"]
    proc = nbgrading.run_nbgrader(pg["course"], "db", "student", "list", env={"MLSEC_GRADEBOOK_URL": pg["url"]},
                                  timeout=120)
    for student in ("alice", "dave", "hank"):
        assert student in proc.stdout
    # an instructor grades alice's written answer in PostgreSQL; a re-run of alice keeps it
    monkeypatch.setenv("MLSEC_GRADEBOOK_URL", pg["url"])
    nbgrading.set_manual_full_marks(pg["course"], LAB, "alice")
    again = subprocess.run([str(GRADE), "--course", str(pg["course"]), "--student", "alice", "--workers", "1",
                            "--dashboard", ":0", "--no-feedback"], capture_output=True, text=True, timeout=600,
                           env=pg["env"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert _cells(pg["url"])["alice"]["score"] == 25
    assert "alice,demo,25,25,20,20,5,0,ok" in (pg["course"] / "grading" / "grades.csv").read_text()
