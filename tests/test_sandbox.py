"""The grading sandbox (coursetools/sandbox.py): student code run by `mlsec-grade` cannot read or
write the course.

The slow test grades, with real nbgrader and real bubblewrap, honest submissions and attackers, on a
throwaway copy of the fixture course (tests/fixtures/course, lab "demo": two autograded tasks of 10
points each with hidden tests, one written answer). Each attacker hands in the blank release with
one attack in its first cell: print every hidden test it can find, set every grade in the gradebook
to full marks, overwrite another student's submission, append to a labkit source file and create a
file in solutions/, open a network connection to a server on the grader's loopback.
"""
import copy
import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import labkit
from coursetools import grade, nbgrading, sandbox

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"


def _digest(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)
            and "__pycache__" not in p.parts}


def test_bwrap_is_installed_and_works():
    """The grader's sandbox exists here (CI installs Debian's bubblewrap in .ci/run)."""
    assert sandbox.check_available().endswith("bwrap")


def test_sandbox_command_binds_only_what_a_kernel_needs(tmp_path):
    course = tmp_path / "course"
    cwd = course / "grading" / "autograded" / "alice" / LAB
    cwd.mkdir(parents=True)
    (cwd / f"{LAB}.ipynb").write_text("{}")
    args = sandbox.bwrap_args(cwd=cwd, runtime=tmp_path / "rt")
    pairs = list(zip(args, args[1:]))
    bound = {b for a, b in pairs if a in ("--ro-bind", "--bind", "--dev-bind")}
    assert str(cwd.resolve()) in bound and str(Path(labkit.__file__).resolve().parent) in bound
    assert ("--bind", str(tmp_path / "rt")) in pairs  # the IPC sockets: the only writable shared folder
    assert ("--ro-bind", "/dev/null") in pairs and str(cwd.resolve() / f"{LAB}.ipynb") in args  # the notebook is masked
    for secret in (course, course / "solutions", course / "grading" / "gradebook.db", ROOT, ROOT / "solutions", Path.home()):
        assert str(secret.resolve()) not in bound, secret
    assert "/" not in bound  # an allowlist, not the whole machine
    assert {"--unshare-all", "--clearenv", "--die-with-parent", "--new-session"} <= set(args)


def test_grade_refuses_without_bwrap_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    nbgrading.submit(course, "alice", LAB, nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb"))
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    monkeypatch.delenv("MLSEC_SANDBOX", raising=False)
    assert grade.main(["--course", str(course)]) == 2
    err = capsys.readouterr().err
    assert "refusing to grade" in err and "apt-get install bubblewrap" in err and "--no-sandbox" in err
    assert not (course / "grading" / "grades.csv").exists()


# ------------------------------------------------------------------------------ attackers
ATTACKS = {
    # print every file under the course and the repository that holds hidden tests
    "mallory_reads": """
import os
for top in (COURSE, REPO, '/'.join(os.getcwd().split('/')[:-4])):
    for d, _, files in os.walk(top):
        if 'site-packages' in d:
            continue
        for f in files:
            try:
                text = open(os.path.join(d, f), errors='ignore').read()
            except OSError:
                continue
            if 'BEGIN HIDDEN ' + 'TESTS' in text:  # split: the marker itself in a cell confuses nbgrader
                print('LEAK', os.path.join(d, f)); print(text)
""",
    # full marks for everyone, straight into nbgrader's gradebook
    "mallory_gradebook": """
import sqlite3, glob
for db in glob.glob(COURSE + '/grading/*.db') + glob.glob('../../../*.db'):
    try:
        con = sqlite3.connect(db); con.execute('UPDATE grade SET manual_score = 10, auto_score = 10'); con.commit(); print('WROTE', db)
    except Exception as err:
        print('no gradebook:', err)
""",
    # rewrite another student's hand-in, and its autograded copy
    "mallory_overwrites": """
import glob
for path in glob.glob(COURSE + '/grading/submitted/*/demo/demo.ipynb') + glob.glob(COURSE + '/grading/autograded/*/demo/demo.ipynb'):
    if '/mallory' not in path:
        try:
            open(path, 'w').write('{}'); print('OVERWROTE', path)
        except OSError as err:
            print('cannot write', path, err)
""",
    # change the course: a labkit source file and a new file in solutions/
    "mallory_tampers": """
import labkit
for path, mode in ((labkit.__file__, 'a'), (COURSE + '/solutions/demo/pwned.txt', 'w'), (REPO + '/solutions/pwned.txt', 'w')):
    try:
        open(path, mode).write('# pwned\\n'); print('WROTE', path)
    except OSError as err:
        print('cannot write', path, err)
""",
    # phone home: a TCP connection to a server on the grader's loopback
    "mallory_network": """
import socket
try:
    socket.create_connection(('127.0.0.1', PORT), timeout=3).sendall(b'exfiltrated'); print('CONNECTED')
except OSError as err:
    print('no network:', err)
""",
}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = nbgrading.make_course(tmp_path_factory.mktemp("sandbox") / "course", [LAB], source=FIXTURE)
    solution = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    release = nbgrading.read_notebook(nbgrading.generate_assignment(course, LAB))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port, received, stop = server.getsockname()[1], [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                received.append(conn.recv(100))
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    prelude = f"COURSE = {str(course)!r}\nREPO = {str(ROOT)!r}\nPORT = {port}\n"
    nbgrading.submit(course, "alice", LAB, solution)  # graded before the attackers
    for name, attack in ATTACKS.items():
        nb = copy.deepcopy(release)
        nbgrading.cell_by_id(nb, "add").source = prelude + attack + "\n" + nbgrading.cell_by_id(nb, "add").source
        nbgrading.submit(course, name, LAB, nb)
    nbgrading.submit(course, "zoe", LAB, solution)  # graded after them
    submitted = nbgrading.course_dir(course, "submitted")
    before = {"submitted": _digest(submitted), "solutions": _digest(course / "solutions"),
              "repo_solutions": _digest(ROOT / "solutions"), "labkit": _digest(Path(labkit.__file__).parent),
              "config": _digest(course, skip=("grading", "solutions"))}
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course)], capture_output=True, text=True, timeout=1200, env=env)
    stop.set()
    server.close()
    after = {"submitted": _digest(submitted), "solutions": _digest(course / "solutions"),
             "repo_solutions": _digest(ROOT / "solutions"), "labkit": _digest(Path(labkit.__file__).parent),
             "config": _digest(course, skip=("grading", "solutions"))}
    return dict(course=course, proc=proc, before=before, after=after, received=received)


def _gradebook_scores(course: Path) -> dict[str, float]:
    """Auto scores per student as nbgrader's gradebook holds them (what formgrader and export read)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        return {s.id: gb.find_submission(LAB, s.id).code_score for s in gb.students}


@pytest.mark.slow
def test_attacks_do_no_harm(attacked):
    proc = attacked["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for part in ("submitted", "solutions", "repo_solutions", "labkit", "config"):
        assert attacked["before"][part] == attacked["after"][part], f"{part} changed"
    assert not (attacked["course"] / "solutions" / LAB / "pwned.txt").exists()
    assert attacked["received"] == [], "a submission reached the grader's loopback"


@pytest.mark.slow
def test_the_gradebook_holds_the_right_scores(attacked):
    scores = _gradebook_scores(attacked["course"])
    assert scores["alice"] == 20 and scores["zoe"] == 20, scores
    for name in ATTACKS:
        assert scores[name] == 0, (name, scores)
    with sqlite3.connect(attacked["course"] / "grading" / "gradebook.db") as con:  # no stray full marks
        assert con.execute("SELECT count(*) FROM grade WHERE auto_score > 0").fetchone()[0] == 4  # 2 cells x alice, zoe


@pytest.mark.slow
def test_attackers_saw_nothing_and_their_feedback_shows_no_hidden_test(attacked):
    course = attacked["course"]
    for name in ATTACKS:
        out = "".join(o.get("text", "") for o in nbgrading.cell_by_id(nbgrading.read_notebook(
            course / "grading" / "autograded" / name / LAB / f"{LAB}.ipynb"), "add").outputs)
        for sign in ("LEAK", "hidden-check", "WROTE", "OVERWROTE", "CONNECTED"):
            assert sign not in out, (name, out)
        feedback = (course / "grading" / "feedback" / name / LAB / f"{LAB}.html").read_text()
        for secret in ("hidden-check", "HIDDEN TESTS", "add(-7, 12)"):
            assert secret not in feedback, (name, secret)
