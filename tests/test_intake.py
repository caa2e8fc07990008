"""Only notebooks are graded (coursetools/intake.py, coursetools/lms.py, coursetools/exchange.py).

Written as a cheating student who has read this repository would write the hand-ins: a hand-in that
is a symlink (or a hard link) to ``solutions/<lab>/<lab>.ipynb``, a lab folder that is a link to
``solutions/<lab>/``, a ``labkit/`` folder and a helper module beside the notebook, a FIFO that
would hang the grader, an over-size notebook; an LMS download with ``..``, absolute, symlink and
device entries, a nested zip bomb and a duplicate beside two honest hand-ins; a folder download with
links; exchange hand-ins forged in another student's name. The fast tests call intake directly; the
slow ones run the real ``mlsec-grade``, ``mlsec-collect`` and ``nbgrader collect`` on throwaway
copies of the fixture course (tests/fixtures/course, lab "demo": 2 x 10 autograded points, one
written answer), and check that nothing outside ``grading/`` changed.
"""
import csv
import hashlib
import io
import os
import pwd
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from traitlets.config import Config

from coursetools import intake, lms, nbgrading

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
COLLECT = Path(sys.executable).with_name("mlsec-collect")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
SOLUTION = FIXTURE / "solutions" / LAB / f"{LAB}.ipynb"
NOTEBOOK = SOLUTION.read_bytes()
# Lines only the solutions hold: none may reach a cheater's feedback.
SOLUTION_LINES = ("return a + b", "sum(xs) / len(xs)", "One extreme value moves the sum")
TIMESTAMP = "2024-05-01 10:00:00.000000 UTC"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: files are chowned to other users")


def _tree(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Every entry below ``folder`` (links as links) with a hash of what it is."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if rel.parts and rel.parts[0] in skip:
            continue
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            out[str(rel)] = "link:" + os.readlink(p)
        else:
            out[str(rel)] = stat.filemode(st.st_mode)[0]
    return out


def _handin(folder: Path, data: bytes = NOTEBOOK) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{LAB}.ipynb").write_bytes(data)
    return folder


# ------------------------------------------------------------------------- fast: intake alone
def test_only_the_notebook_and_nbgrader_metadata_are_taken(tmp_path):
    submitted = tmp_path / "submitted"
    folder = _handin(submitted / "alice" / LAB)
    (folder / "helper.py").write_text("def add(a, b):\n    return a + b\n")
    (folder / "labkit").mkdir()
    (folder / "labkit" / "__init__.py").write_text("raise SystemExit('pwned')\n")
    (folder / "timestamp.txt").write_text(TIMESTAMP)
    (folder / ".ipynb_checkpoints").mkdir()
    handin = intake.read_handin(submitted, "alice", LAB)
    assert handin.refused is None
    assert handin.files == {f"{LAB}.ipynb": NOTEBOOK, "timestamp.txt": TIMESTAMP.encode()}
    assert any(n.startswith("helper.py: not taken") for n in handin.ignored), handin.ignored
    assert any(n.startswith("labkit: not taken (a folder") for n in handin.ignored), handin.ignored
    assert not any(".ipynb_checkpoints" in n for n in handin.ignored)


def _cheats(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """grading/submitted/ with one cheat per student, and the reason each must be refused for."""
    solutions = tmp_path / "course" / "solutions" / LAB
    if not (solutions / f"{LAB}.ipynb").is_file():
        solutions.mkdir(parents=True)
        (solutions / f"{LAB}.ipynb").write_bytes(NOTEBOOK)
    submitted = tmp_path / "course" / "grading" / "submitted"
    expected = {}
    (submitted / "link" / LAB).mkdir(parents=True)
    (submitted / "link" / LAB / f"{LAB}.ipynb").symlink_to(solutions / f"{LAB}.ipynb")
    expected["link"] = f"{LAB}.ipynb is a symlink"
    (submitted / "relative" / LAB).mkdir(parents=True)
    (submitted / "relative" / LAB / f"{LAB}.ipynb").symlink_to(f"../../../../solutions/{LAB}/{LAB}.ipynb")
    expected["relative"] = f"{LAB}.ipynb is a symlink"
    (submitted / "dirlink").mkdir()
    (submitted / "dirlink" / LAB).symlink_to(solutions)
    expected["dirlink"] = f"{LAB}/ is a symlink, not a folder"
    (submitted / "hard" / LAB).mkdir(parents=True)
    os.link(solutions / f"{LAB}.ipynb", submitted / "hard" / LAB / f"{LAB}.ipynb")
    expected["hard"] = f"{LAB}.ipynb has 2 hard links"
    (submitted / "fifo" / LAB).mkdir(parents=True)
    os.mkfifo(submitted / "fifo" / LAB / f"{LAB}.ipynb")
    expected["fifo"] = f"{LAB}.ipynb is a FIFO"
    (submitted / "folder" / LAB / f"{LAB}.ipynb").mkdir(parents=True)
    expected["folder"] = f"{LAB}.ipynb is a folder"
    _handin(submitted / "big" / LAB, NOTEBOOK + b" " * 70_000)
    expected["big"] = f"{LAB}.ipynb is 73"
    _handin(submitted / "other" / LAB).joinpath(f"{LAB}.ipynb").rename(submitted / "other" / LAB / "mine.ipynb")
    expected["other"] = f"no {LAB}.ipynb (found mine.ipynb)"
    if os.geteuid() == 0:
        (submitted / "device" / LAB).mkdir(parents=True)
        os.mknod(submitted / "device" / LAB / f"{LAB}.ipynb", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        expected["device"] = f"{LAB}.ipynb is a character device"
    return submitted, expected


def test_links_devices_hard_links_and_big_files_are_refused(tmp_path):
    submitted, expected = _cheats(tmp_path)
    for student, reason in expected.items():
        handin = intake.read_handin(submitted, student, LAB, max_bytes=64 * 1024)
        assert handin.files == {} and handin.refused and handin.refused.startswith(reason), (student, handin)


def test_scan_finds_hand_ins_without_following_links(tmp_path):
    submitted, expected = _cheats(tmp_path)
    _handin(submitted / "alice" / LAB)
    (submitted / "eve").symlink_to(submitted / "alice")     # a student folder that is another's
    found, notes = intake.scan_submitted(submitted)
    assert set(found) == set(expected) | {"alice"}
    assert found["dirlink"] == [LAB]                          # listed, to be refused with a row
    assert notes == ["eve/: refused: the student folder is a symlink"]


def test_the_cap_is_read_from_the_course_config():
    assert intake.max_notebook_bytes(None) == intake.MAX_NOTEBOOK_BYTES == 32 * 2**20
    assert intake.max_notebook_bytes(nbgrading.course_config(ROOT)) == 32 * 2**20
    cfg = Config()
    cfg.Intake.max_notebook_bytes = 1000
    assert intake.max_notebook_bytes(cfg) == 1000
    cfg.Intake.max_notebook_bytes = "big"
    with pytest.raises(ValueError, match="c.Intake.max_notebook_bytes"):
        intake.max_notebook_bytes(cfg)


def _entry(zf: zipfile.ZipFile, name: str, data: bytes = NOTEBOOK, *, mode: int | None = None) -> None:
    info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 10, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    if mode is not None:
        info.create_system = 3
        info.external_attr = mode << 16
    zf.writestr(info, data)


def _nested_bomb() -> bytes:
    """A zip holding 64 MiB of zeros and another zip: a few hundred KiB that unpack recursively."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"zeros{i}.ipynb", b"\0" * 16 * 2**20)
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"again{i}.zip", inner.getvalue())
    return outer.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_extract_zip_writes_only_safe_notebooks(tmp_path):
    download = tmp_path / "download.zip"
    outside = tmp_path / "outside"
    with zipfile.ZipFile(download, "w") as zf:
        _entry(zf, "alice_demo.ipynb")
        _entry(zf, "folder/bob_demo.ipynb")
        _entry(zf, "folder/")
        _entry(zf, "../evil.ipynb")
        _entry(zf, "../../../../outside/evil.ipynb")
        _entry(zf, f"{outside}/absolute.ipynb")
        _entry(zf, "C:/windows.ipynb")
        _entry(zf, "..\\backslash.ipynb")
        _entry(zf, "link.ipynb", f"../../solutions/{LAB}/{LAB}.ipynb".encode(), mode=stat.S_IFLNK | 0o777)
        _entry(zf, "dev.ipynb", b"", mode=stat.S_IFCHR | 0o666)
        _entry(zf, "fifo.ipynb", b"", mode=stat.S_IFIFO | 0o666)
        _entry(zf, "nested.zip", _nested_bomb())
        _entry(zf, "big.ipynb", b" " * (2 * 2**20))
        _entry(zf, "bomb.ipynb", b"\0" * (30 * 2**20))
        _entry(zf, "alice_demo.ipynb", b"a second entry of the same name")
        _entry(zf, "notes.txt", b"hello")
        _entry(zf, "newline\n.ipynb")
    dest = tmp_path / "extracted" / "download"
    dest.mkdir(parents=True)
    before = _tree(tmp_path, skip=("extracted",))
    written, refused = intake.extract_zip(download, dest)
    reasons = dict(refused)
    assert written == ["alice_demo.ipynb", "folder/bob_demo.ipynb"]
    assert (dest / "alice_demo.ipynb").read_bytes() == (dest / "folder" / "bob_demo.ipynb").read_bytes() == NOTEBOOK
    assert sorted(_tree(tmp_path / "extracted")) == ["download", "download/alice_demo.ipynb", "download/folder",
                                                     "download/folder/bob_demo.ipynb"]
    assert _tree(tmp_path, skip=("extracted",)) == before and not outside.exists()
    assert reasons["download.zip/../evil.ipynb"] == "a path that leaves the folder (..)"
    assert reasons["download.zip/../../../../outside/evil.ipynb"] == "a path that leaves the folder (..)"
    assert reasons[f"download.zip/{outside}/absolute.ipynb"] == "an absolute path"
    assert reasons["download.zip/C:/windows.ipynb"] == "an absolute path"
    assert reasons["download.zip/..\\backslash.ipynb"] == "a backslash in its name"
    assert reasons["download.zip/link.ipynb"] == "a symlink entry"
    assert reasons["download.zip/dev.ipynb"] == "a character device entry"
    assert reasons["download.zip/fifo.ipynb"] == "a FIFO entry"
    assert reasons["download.zip/nested.zip"] == "an archive inside the download: not unpacked"
    assert "(a zip bomb?)" in reasons["download.zip/bomb.ipynb"]
    assert reasons["download.zip/notes.txt"].startswith("not a notebook")
    assert reasons["download.zip/newline?.ipynb"] == "a control character in its name"
    assert [r for n, r in refused if n == "download.zip/alice_demo.ipynb"] == ["a second entry of the same name"]
    # under a 1 MiB cap, the 2 MiB notebook is refused without being read
    dest2 = tmp_path / "extracted" / "capped"
    dest2.mkdir()
    _, refused = intake.extract_zip(download, dest2, max_bytes=2**20)
    assert dict(refused)["download.zip/big.ipynb"] == "2.0 MiB, over the cap of 1.0 MiB (c.Intake.max_notebook_bytes)"


def test_extract_zip_keeps_to_its_budget(tmp_path):
    download = tmp_path / "many.zip"
    with zipfile.ZipFile(download, "w") as zf:
        for i in range(10):
            _entry(zf, f"s{i}_demo.ipynb")
    dest = tmp_path / "out"
    dest.mkdir()
    written, refused = intake.extract_zip(download, dest, budget=intake.Budget(entries=4))
    assert len(written) == 4 and refused == [("many.zip/...", f"6 more entries not read: the download passed "
                                                             f"{intake.MAX_ENTRIES} entries")]
    dest2 = tmp_path / "out2"
    dest2.mkdir()
    written, refused = intake.extract_zip(download, dest2, budget=intake.Budget(bytes=3 * len(NOTEBOOK)))
    assert len(written) == 3 and len(refused) == 7


def test_copy_regular_files_never_follows_a_link(tmp_path):
    secret = tmp_path / "solutions" / f"{LAB}.ipynb"
    secret.parent.mkdir()
    secret.write_bytes(NOTEBOOK)
    src = tmp_path / "download"
    src.mkdir()
    (src / "alice_demo.ipynb").write_bytes(b"alice")
    (src / "sub").mkdir()
    (src / "sub" / "bob_demo.ipynb").write_bytes(b"bob")
    (src / "link_demo.ipynb").symlink_to(secret)
    (src / "linkdir").symlink_to(secret.parent)
    os.link(secret, src / "hard_demo.ipynb")
    os.mkfifo(src / "fifo_demo.ipynb")
    (src / "notes.txt").write_text("x")
    copied, refused = intake.copy_regular_files(src, tmp_path / "copy", keep=lambda n: n.endswith(".ipynb"))
    assert copied == ["alice_demo.ipynb", "sub/bob_demo.ipynb"]
    assert _tree(tmp_path / "copy") == {"alice_demo.ipynb": hashlib.sha256(b"alice").hexdigest(), "sub": "d",
                                        "sub/bob_demo.ipynb": hashlib.sha256(b"bob").hexdigest()}
    assert dict(refused) == {
        "fifo_demo.ipynb": "fifo_demo.ipynb is a FIFO",
        "hard_demo.ipynb": "hard_demo.ipynb has 2 hard links (a hand-in must be a file of its own)",
        "link_demo.ipynb": "link_demo.ipynb is a symlink",
        "linkdir": "linkdir is a symlink",
        "notes.txt": "not a notebook (only .ipynb files are collected)"}


def _exchange_handin(inbound: Path, student: str, uid: int, *, stamp: str = TIMESTAMP,
                     data: bytes | None = None) -> Path:
    folder = inbound / f"{student}+{LAB}+{stamp}+{os.urandom(4).hex()}"
    _handin(folder, data if data is not None else NOTEBOOK.replace(b"Demo lab", f"Demo lab by {student}".encode()))
    (folder / "timestamp.txt").write_text(stamp)
    for p in (folder, *folder.rglob("*")):
        os.lchown(p, uid, uid)
    return folder


def _uid(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        pytest.skip(f"needs the system user {name!r}")


def test_exchange_handin_of_another_user_is_refused(tmp_path):
    """As any user: a hand-in claiming a system user that is not its owner is refused."""
    me = os.geteuid()
    daemon = _uid("daemon")
    assert daemon != me
    forged = _exchange_handin(tmp_path, "daemon", me)
    handin = intake.read_exchange_handin(forged, "daemon", LAB, collector_uid=me)
    assert handin.files == {} and "claims to be by daemon but is owned by" in handin.refused
    mine = _exchange_handin(tmp_path, pwd.getpwuid(me).pw_name, me)
    assert intake.read_exchange_handin(mine, pwd.getpwuid(me).pw_name, LAB, collector_uid=me).refused is None
    assert intake.read_exchange_handin(forged, "daemon", LAB, collector_uid=me, check_owner=False).refused is None


@root_only
def test_exchange_owner_rules(tmp_path):
    nobody, daemon = _uid("nobody"), _uid("daemon")
    assert "nosuchstudent" not in {p.pw_name for p in pwd.getpwall()}
    honest = _exchange_handin(tmp_path, "nobody", nobody)
    got = intake.read_exchange_handin(honest, "nobody", LAB, collector_uid=0)
    assert got.refused is None and set(got.files) == {f"{LAB}.ipynb", "timestamp.txt"}
    forged = _exchange_handin(tmp_path, "daemon", nobody)
    assert "owned by nobody (uid" in intake.read_exchange_handin(forged, "daemon", LAB, collector_uid=0).refused
    stranger = _exchange_handin(tmp_path, "nosuchstudent", 4242)
    why = intake.read_exchange_handin(stranger, "nosuchstudent", LAB, collector_uid=0).refused
    assert "owned by uid 4242" in why and "the instructor running collect (uid 0)" in why
    instructor = _exchange_handin(tmp_path, "nosuchstudent", 0)
    assert intake.read_exchange_handin(instructor, "nosuchstudent", LAB, collector_uid=0).refused is None
    mixed = _exchange_handin(tmp_path, "daemon", daemon)
    (mixed / "helper.py").write_text("x")
    os.chown(mixed / "helper.py", nobody, nobody)
    assert "helper.py is owned by nobody" in intake.read_exchange_handin(mixed, "daemon", LAB, collector_uid=0).refused


# -------------------------------------------------------------------- slow: the real commands
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """mlsec-grade on a course whose grading/submitted/ holds two honest students and the cheats."""
    tmp = tmp_path_factory.mktemp("intake")
    course = nbgrading.make_course(tmp / "course", [LAB], source=FIXTURE)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write("\nc.Intake.max_notebook_bytes = 64 * 1024\n")
    submitted, expected = _cheats(tmp)
    folder = _handin(submitted / "alice" / LAB)
    (folder / "helper.py").write_text("def add(a, b):\n    return a + b\n")
    (folder / "labkit").mkdir()
    (folder / "labkit" / "__init__.py").write_text("raise SystemExit('pwned')\n")
    (folder / "timestamp.txt").write_text(TIMESTAMP)
    _handin(submitted / "zoe" / LAB)
    (submitted / "eve").symlink_to(submitted / "alice")
    before = {"course": _tree(course, skip=("grading",)), "submitted": _tree(submitted),
              "repo": _tree(ROOT / "solutions")}
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--dashboard", ":0", "--no-progress"],
                          capture_output=True, text=True, timeout=900, env=env)
    after = {"course": _tree(course, skip=("grading",)), "submitted": _tree(submitted),
             "repo": _tree(ROOT / "solutions")}
    rows = {}
    if (course / "grading" / "grades.csv").is_file():
        rows = {r["student"]: r for r in csv.DictReader(open(course / "grading" / "grades.csv"))}
    return dict(course=course, proc=proc, expected=expected, before=before, after=after, rows=rows)


@pytest.mark.slow
def test_grade_refuses_links_and_grades_the_honest(graded):
    proc, rows = graded["proc"], graded["rows"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert graded["before"] == graded["after"], "something outside grading/ (or a hand-in) changed"
    assert rows["alice"]["status"] == "ok" and rows["alice"]["score"] == "20"
    assert rows["zoe"]["status"] == "ok" and rows["zoe"]["score"] == "20"
    assert "eve" not in rows and "eve/: refused: the student folder is a symlink" in proc.stdout
    for student, reason in graded["expected"].items():
        assert rows[student]["status"].startswith(f"refused: {reason}"), (student, rows[student])
        assert rows[student]["score"] == "0"
        assert f"{student}/{LAB}: refused: {reason}" in proc.stdout, student


@pytest.mark.slow
def test_a_cheat_gets_no_feedback_and_no_gradebook_entry(graded):
    from nbgrader.api import Gradebook

    grading = graded["course"] / "grading"
    with Gradebook(f"sqlite:///{grading / 'gradebook.db'}") as gb:
        graded_students = {s.id for s in gb.students if s.submissions}
    assert graded_students == {"alice", "zoe"}
    for student in graded["expected"]:
        assert not (grading / "autograded" / student).exists() and not (grading / "feedback" / student).exists()
    # no page written by this run quotes the solutions, except those of the two who handed them in
    for page in (grading / "feedback").rglob("*.html"):
        if page.relative_to(grading / "feedback").parts[0] not in ("alice", "zoe"):
            assert not any(line in page.read_text() for line in SOLUTION_LINES), page
    assert (grading / "feedback" / "alice" / LAB / f"{LAB}.html").is_file()


@pytest.mark.slow
def test_files_beside_the_notebook_never_reach_the_grader(graded):
    grading = graded["course"] / "grading"
    # nbgrader copies the whole submission folder into autograded/: only what was shipped is there
    shipped = sorted(p.name for p in (grading / "autograded" / "alice" / LAB).iterdir())
    assert shipped == [f"{LAB}.ipynb", "timestamp.txt"]
    assert "alice/demo/helper.py: not taken" in graded["proc"].stdout
    assert "alice/demo/labkit: not taken" in graded["proc"].stdout


def _canvas(zf: zipfile.ZipFile, name: str, student: str, data: bytes = NOTEBOOK) -> None:
    _entry(zf, f"{name}_{student}_5678_{LAB}.ipynb", data)


@pytest.mark.slow
def test_collect_a_hostile_zip_keeps_the_honest_hand_ins(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write("\nc.Intake.max_notebook_bytes = 2**20\n")
    outside = tmp_path / "outside"
    late = NOTEBOOK.replace(b"Demo lab", b"Demo lab, late")
    download = tmp_path / "submissions.zip"
    with zipfile.ZipFile(download, "w") as zf:
        _canvas(zf, "doejane", "1234")
        _entry(zf, f"roefred_3456_7890_{LAB}.zip", _nested_bomb())
        _entry(zf, f"../../../evil_9999_1_{LAB}.ipynb")
        _entry(zf, f"{outside}/abs_9998_1_{LAB}.ipynb")
        _entry(zf, f"link_9997_1_{LAB}.ipynb", f"../../../../../solutions/{LAB}/{LAB}.ipynb".encode(),
               mode=stat.S_IFLNK | 0o777)
        _entry(zf, f"dev_9996_1_{LAB}.ipynb", b"", mode=stat.S_IFCHR | 0o666)
        _canvas(zf, "bigbob", "9995", b" " * (4 * 2**20))
        _canvas(zf, "smithbob", "2345", late)
        _entry(zf, f"smithbob_LATE_2345_5678_{LAB}.ipynb", b"a second copy")  # would stop zip_collect
    before = _tree(tmp_path, skip=("course",))
    course_before = _tree(course, skip=("grading",))
    proc = subprocess.run([str(COLLECT), LAB, str(download), "--course", str(course), "--pattern", "canvas"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    submitted = nbgrading.course_dir(course, "submitted")
    assert _tree(submitted) == {
        "1234": "d", f"1234/{LAB}": "d", f"1234/{LAB}/{LAB}.ipynb": hashlib.sha256(NOTEBOOK).hexdigest(),
        "2345": "d", f"2345/{LAB}": "d", f"2345/{LAB}/{LAB}.ipynb": hashlib.sha256(late).hexdigest()}
    err = proc.stderr
    assert f"submissions.zip/roefred_3456_7890_{LAB}.zip: refused: an archive inside the download: not unpacked" in err
    assert f"submissions.zip/../../../evil_9999_1_{LAB}.ipynb: refused: a path that leaves the folder (..)" in err
    assert f"submissions.zip/{outside}/abs_9998_1_{LAB}.ipynb: refused: an absolute path" in err
    assert f"submissions.zip/link_9997_1_{LAB}.ipynb: refused: a symlink entry" in err
    assert f"submissions.zip/dev_9996_1_{LAB}.ipynb: refused: a character device entry" in err
    assert f"submissions.zip/bigbob_9995_5678_{LAB}.ipynb: refused: 4.0 MiB, over the cap of 1.0 MiB" in err
    assert (f"smithbob_LATE_2345_5678_{LAB}.ipynb: refused: a second file for {LAB}.ipynb of student 2345 "
            f"(kept smithbob_2345_5678_{LAB}.ipynb; check by hand)") in err
    # nothing written outside grading/, and nothing unpacked from the nested archive
    assert _tree(tmp_path, skip=("course",)) == before and not outside.exists()
    assert _tree(course, skip=("grading",)) == course_before
    written = sum(p.stat().st_size for p in (course / "grading").rglob("*") if p.is_file())
    assert written < 2**20 + 2 * download.stat().st_size, written


@pytest.mark.slow
def test_collect_from_a_folder_copies_only_regular_files(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    secret = course / "solutions" / LAB / f"{LAB}.ipynb"
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / f"doejane_1234_5678_{LAB}.ipynb").write_bytes(NOTEBOOK)
    (folder / f"evil_7777_5678_{LAB}.ipynb").symlink_to(secret)
    os.link(secret, folder / f"hard_5555_5678_{LAB}.ipynb")
    os.mkfifo(folder / f"fifo_6666_5678_{LAB}.ipynb")
    (folder / "sub").symlink_to(secret.parent)
    solutions_before = _tree(course / "solutions")
    written, problems = lms.collect(course, LAB, folder, pattern="canvas")
    submitted = nbgrading.course_dir(course, "submitted")
    assert [p.relative_to(submitted).as_posix() for p in written] == [f"1234/{LAB}/{LAB}.ipynb"]
    assert sorted(p.relative_to(submitted).as_posix() for p in submitted.rglob("*") if p.is_file()) == [
        f"1234/{LAB}/{LAB}.ipynb"]
    text = "\n".join(problems)
    assert f"evil_7777_5678_{LAB}.ipynb: refused: evil_7777_5678_{LAB}.ipynb is a symlink" in text
    assert f"hard_5555_5678_{LAB}.ipynb: refused: hard_5555_5678_{LAB}.ipynb has 2 hard links" in text
    assert f"fifo_6666_5678_{LAB}.ipynb: refused: fifo_6666_5678_{LAB}.ipynb is a FIFO" in text
    assert "sub: refused: sub is a symlink" in text
    assert _tree(course / "solutions") == solutions_before


@pytest.mark.slow
@root_only
def test_exchange_collect_refuses_forged_and_linked_hand_ins(tmp_path):
    nobody, daemon, bin_, sys_ = (_uid(n) for n in ("nobody", "daemon", "bin", "sys"))
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    exchange = tmp_path / "exchange"
    inbound = exchange / "mlsec" / "inbound"
    inbound.mkdir(parents=True)
    os.chmod(inbound, 0o733)
    secret = course / "solutions" / LAB / f"{LAB}.ipynb"
    honest = _exchange_handin(inbound, "nobody", nobody)
    # a newer hand-in in nobody's name, owned by daemon: refused, and it does not hide nobody's own
    _exchange_handin(inbound, "nobody", daemon, stamp="2024-06-01 10:00:00.000000 UTC", data=b"{}")
    _exchange_handin(inbound, "daemon", nobody)                           # daemon's name, nobody's folder
    linked = _exchange_handin(inbound, "bin", bin_)
    (linked / f"{LAB}.ipynb").unlink()
    (linked / f"{LAB}.ipynb").symlink_to(secret)
    os.lchown(linked / f"{LAB}.ipynb", bin_, bin_)
    mixed = _exchange_handin(inbound, "sys", sys_)
    (mixed / "helper.py").write_text("x")
    os.chown(mixed / "helper.py", nobody, nobody)
    _exchange_handin(inbound, "nosuchstudent", 4242)                      # no such user, not the instructor's
    mine = _exchange_handin(inbound, "instructortest", 0)                 # the instructor's own test hand-in
    (mine / "helper.py").write_text("x")
    course_before, solutions_before = _tree(course, skip=("grading",)), _tree(ROOT / "solutions")
    proc = nbgrading.run_nbgrader(course, "collect", LAB, env={"MLSEC_EXCHANGE": str(exchange)},
                                  check=False, timeout=300)
    log = proc.stdout
    assert proc.returncode == 0, log
    submitted = nbgrading.course_dir(course, "submitted")
    assert sorted(p.name for p in submitted.iterdir()) == ["instructortest", "nobody"], log
    assert (submitted / "nobody" / LAB / f"{LAB}.ipynb").read_bytes() == (honest / f"{LAB}.ipynb").read_bytes()
    assert sorted(p.name for p in (submitted / "instructortest" / LAB).iterdir()) == [f"{LAB}.ipynb", "timestamp.txt"]
    assert "claims to be by nobody but is owned by daemon" in log
    assert "claims to be by daemon but is owned by nobody" in log
    assert f"{LAB}.ipynb is a symlink" in log
    assert "helper.py is owned by nobody" in log
    assert "claims to be by nosuchstudent but is owned by uid 4242" in log
    assert "5 hand-in(s) of 'demo' refused" in log
    assert _tree(course, skip=("grading",)) == course_before and _tree(ROOT / "solutions") == solutions_before
    assert not any(p.is_symlink() for p in submitted.rglob("*"))
