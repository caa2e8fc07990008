"""The grading pipeline (coursetools.nbgrading, the console scripts mlsec-grade and mlsec-check-lab,
nbgrader_config.py) on a tiny fixture course: tests/fixtures/course/solutions/demo/demo.ipynb has two autograded tasks
(test_add, test_mean: 10 points each, with hidden tests) and one written answer (5 points).

Everything runs in temporary copies of the course; the repository's grading/ folder is never used.
"""
import copy
import hashlib
import html
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from coursetools import nbgrading
from coursetools.nbgrader_feedback import HideHiddenTests, failing_line

ROOT = Path(__file__).resolve().parents[1]
# The console scripts pip installs with the project, next to the interpreter running the tests.
GRADE = Path(sys.executable).with_name("mlsec-grade")
CHECK_LAB = Path(sys.executable).with_name("mlsec-check-lab")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
CELL_TIMEOUT = 5  # seconds per cell in these tests (the course default is 300)


def _solution():
    return nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")


def _visible_text(path):
    """The text a reader of an HTML page sees (tags stripped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", Path(path).read_text()))


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- fast: no kernel
def test_course_config_sets_timeout_and_feedback_plugin():
    cfg = nbgrading.course_config(ROOT)
    assert cfg.Execute.timeout == 300
    assert "coursetools.nbgrader_feedback.HideHiddenTests" in cfg.GenerateFeedback.preprocessors
    assert cfg.CourseDirectory.source_directory == "solutions"
    assert cfg.CourseDirectory.release_directory == "labs"


def test_feedback_preprocessor_name_imports_the_plugin():
    from traitlets.utils.importstring import import_item

    (name,) = [p for p in nbgrading.course_config(ROOT).GenerateFeedback.preprocessors
               if p.endswith("HideHiddenTests")]
    assert import_item(name) is HideHiddenTests


def test_no_import_path_edits_in_the_repository():
    """coursetools is an installed package: no file puts folders on the import path by hand."""
    attr = "sys" + ".path"  # spelled in two, so that this file does not match itself
    banned = (f"{attr}.insert", f"{attr}.append")
    skip = {".venv", "_build", ".git", "__pycache__", ".pytest_cache", ".jupyter_cache", "grading"}
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.endswith(".egg-info")]
        for name in files:
            if name.endswith((".py", ".yml", ".yaml")) or name == "Makefile":
                path = Path(folder) / name
                text = path.read_text(errors="replace")
                offenders += [f"{path.relative_to(ROOT)}: {b}" for b in banned if b in text]
    assert offenders == []


@pytest.mark.parametrize("script", [GRADE, CHECK_LAB], ids=lambda p: p.name)
def test_console_scripts_are_installed(script):
    assert script.is_file(), f"{script} missing: reinstall the project (pip install -e .)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_make_partial_fills_only_the_first_solution_cell():
    sol = _solution()
    release = copy.deepcopy(sol)
    for c in nbgrading.solution_code_cells(release):
        c.source = "# YOUR CODE HERE\nraise NotImplementedError()"
    partial = nbgrading.make_partial(release, sol)
    add, mean = nbgrading.solution_code_cells(partial)
    assert "return a + b" in add.source and "BEGIN SOLUTION" not in add.source
    assert "raise NotImplementedError()" in mean.source
    assert nbgrading.solution_code_cells(release)[0].source.endswith("NotImplementedError()")  # input untouched
    with pytest.raises(ValueError, match="solution cell"):
        nbgrading.make_partial(release, nbformat.v4.new_notebook())


def test_strip_solution_markers_keeps_the_code():
    src = "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    assert nbgrading.strip_solution_markers(src) == "def f():\n    return 1"


def test_expectations_flag_each_violation():
    def score(student, auto):
        return nbgrading.LabScore(student, LAB, auto, 20.0, 0.0, 5.0, 5.0, auto, 25.0, ())
    good = {"solution": score("solution", 20.0), "release": score("release", 0.0), "partial": score("partial", 10.0)}
    assert nbgrading.expectations(good) == []
    assert any("release scores 10" in p for p in nbgrading.expectations({**good, "release": score("release", 10.0)}))
    assert any("solution scores 15" in p for p in nbgrading.expectations({**good, "solution": score("solution", 15.0)}))
    for bad in (0.0, 20.0):
        assert any("partial" in p for p in nbgrading.expectations({**good, "partial": score("partial", bad)}))
    assert any("no score" in p for p in nbgrading.expectations({"solution": good["solution"]}))


def test_hide_hidden_tests_drops_region_and_tracebacks():
    cell = nbformat.v4.new_code_cell(
        '"""checks add"""\nassert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-7, 12) == 5\n### END HIDDEN TESTS')
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                 "grade_id": "t", "schema_version": 3}
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="expected 5, reference says 5",
                                           traceback=["----> 4 assert add(-7, 12) == 5"])]
    out, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert "add(-7, 12)" not in out.source and "assert add(1, 2) == 3" in out.source
    assert "add(-7, 12)" not in "".join(out.outputs[0].traceback)
    assert "reference says" not in "".join(out.outputs[0].traceback) + out.outputs[0].evalue
    assert out.outputs[0].traceback[0].startswith("AssertionError")


def test_a_student_cell_quoting_the_hidden_test_marker_is_left_alone():
    """A solution cell that contains the marker (unbalanced, even) is the student's own text: feedback
    generation must not fail on it, and it is shown as written."""
    src = 'def add(a, b):\n    # ### BEGIN HIDDEN TESTS  (a student\'s joke)\n    return a + b'
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": "add", "schema_version": 3}
    out, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert out.source == src


def test_hide_hidden_tests_keeps_a_visible_failure_message():
    source = '"""checks add"""\nassert add(1, 2) == 3, "add(1, 2) should be 3"\n### BEGIN HIDDEN TESTS\nassert add(-7, 12) == 5\n### END HIDDEN TESTS'
    tb = ["\x1b[0;31mAssertionError\x1b[0m  Traceback (most recent call last)",
          "Cell \x1b[0;32mIn[4], line 2\x1b[0m\n      1 \"\"\"checks add\"\"\"\n----> 2 assert add(1, 2) == 3\n      4 assert add(-7, 12) == 5",
          "\x1b[0;31mAssertionError\x1b[0m: add(1, 2) should be 3"]
    for line, shown in ((2, True), (4, False)):
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                     "grade_id": "t", "schema_version": 3}
        evalue = "add(1, 2) should be 3" if shown else "reference says 5"
        cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue=evalue,
                                               traceback=[t.replace("line 2", f"line {line}") for t in tb])]
        out, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
        text = "".join(out.outputs[0].traceback)
        assert "add(-7, 12)" not in text  # the context lines around the failing one are gone
        assert ("add(1, 2) should be 3" in text) == shown
        assert "reference says" not in text + out.outputs[0].evalue
    assert failing_line(["no frame here"]) is None


def test_grade_reports_nothing_to_grade(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    proc = subprocess.run([str(GRADE), "--course", str(course)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "nothing to grade" in proc.stderr
    assert not (course / "grading" / "grades.csv").exists()


def test_make_course_refuses_unknown_lab(tmp_path):
    with pytest.raises(ValueError, match="nolab"):
        nbgrading.make_course(tmp_path / "c", ["nolab"], source=FIXTURE)


# --------------------------------------------------------------------- slow: real nbgrader
def _submissions():
    """Student -> notebook (or raw bytes) exercising each way a submission can go wrong."""
    sol = _solution()
    subs = {"alice": sol}                                            # all correct
    bob = copy.deepcopy(sol)                                         # loops forever in task 1's cell
    nbgrading.cell_by_id(bob, "add").source = "while True:\n    pass\n" + nbgrading.cell_by_id(bob, "add").source
    subs["bob"] = bob
    carol = copy.deepcopy(sol)                                       # kills its kernel in task 2
    nbgrading.cell_by_id(carol, "mean").source = "import os\nos._exit(1)"
    subs["carol"] = carol
    dave = copy.deepcopy(sol)                                        # raises in task 2's cell
    nbgrading.cell_by_id(dave, "mean").source = "raise RuntimeError('dave broke it')"
    subs["dave"] = dave
    ivan = copy.deepcopy(sol)                                        # fails a visible test
    nbgrading.cell_by_id(ivan, "add").source = nbgrading.cell_by_id(ivan, "add").source.replace("return a + b", "return a - b")
    subs["ivan"] = ivan
    gina = copy.deepcopy(sol)                                        # passes visible, fails hidden test
    nbgrading.cell_by_id(gina, "add").source = nbgrading.cell_by_id(gina, "add").source.replace("return a + b", "return abs(a) + b")
    subs["gina"] = gina
    subs["hank"] = b"{ this is not a notebook"                        # unreadable file
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One `mlsec-grade` batch over the fixture course's submissions, timed."""
    course = nbgrading.make_course(tmp_path_factory.mktemp("grading") / "course", [LAB], source=FIXTURE)
    # The per-cell limit goes through the config file, under the key the course config uses.
    with open(course / "nbgrader_config.py", "a") as fh:
        fh.write(f"\nc.Execute.timeout = {CELL_TIMEOUT}\n")
    for student, nb in _submissions().items():
        nbgrading.submit(course, student, LAB, nb)
    # erin hands in the untouched release.
    release = nbgrading.generate_assignment(course, LAB)
    nbgrading.submit(course, "erin", LAB, release)
    submitted = nbgrading.course_dir(course, "submitted")
    before = _digest(submitted)
    start = time.perf_counter()
    proc = subprocess.run([str(GRADE), "--course", str(course)], capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    rows = {r["student"]: r for r in _read_csv(course / "grading" / "grades.csv")}
    return dict(course=course, proc=proc, seconds=seconds, rows=rows, before=before,
                after=_digest(submitted))


def _read_csv(path):
    import csv
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_batch_completes_and_writes_every_student(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stdout + graded["proc"].stderr
    assert sorted(graded["rows"]) == ["alice", "bob", "carol", "dave", "erin", "gina", "hank", "ivan"]
    # the per-student table is printed
    table = graded["proc"].stdout.split("\nstudent ")[-1]
    for student in graded["rows"]:
        assert student in table


@pytest.mark.slow
def test_grades_csv_scores(graded):
    rows = graded["rows"]

    def num(student, key):
        return float(rows[student][key])

    assert (num("alice", "auto_score"), num("alice", "max_auto_score")) == (20, 20)
    assert (num("alice", "manual_pending"), num("alice", "max_score")) == (5, 25)
    assert rows["alice"]["status"] == "ok"
    assert num("dave", "auto_score") == 10      # the exception costs task 2 only
    assert num("gina", "auto_score") == 10      # the hidden test catches abs(a)
    assert num("ivan", "auto_score") == 10      # the visible test catches a - b
    assert num("erin", "auto_score") == 0 and num("erin", "manual_pending") == 0  # "YOUR ANSWER HERE" scores 0
    # a kernel that dies in task 2 keeps task 1's points, and the status says why
    assert num("carol", "auto_score") == 10 and rows["carol"]["status"].startswith("stopped: cell mean:"), rows["carol"]
    assert "exited with status 1" in rows["carol"]["status"]
    assert num("hank", "score") == 0 and rows["hank"]["status"].startswith("failed"), rows["hank"]  # not a notebook


@pytest.mark.slow
def test_infinite_loop_is_interrupted_by_cell_timeout(graded):
    bob = graded["rows"]["bob"]
    assert bob["status"] == "ok"
    assert float(bob["auto_score"]) == 10       # task 1 lost; task 2 still scored after the timeout
    log = (graded["course"] / "grading" / "logs" / f"bob__{LAB}.log").read_text()
    assert f"Timeout waiting for execute reply ({CELL_TIMEOUT}s)" in log
    autograded = nbgrading.read_notebook(graded["course"] / "grading" / "autograded" / "bob" / LAB / f"{LAB}.ipynb")
    enames = [o.get("ename") for o in nbgrading.cell_by_id(autograded, "add").outputs if o.output_type == "error"]
    assert "CellTimeoutError" in enames
    # bob's autograde (and feedback) took far less than the course's 300 s per cell.
    (line,) = [ln for ln in graded["proc"].stdout.splitlines()
               if ln.strip().startswith("bob ") and re.search(r" s  ok$", ln)]
    assert float(re.search(r"([0-9.]+) s ", line).group(1)) < 150


@pytest.mark.slow
def test_feedback_html_hides_hidden_tests(graded):
    feedback = graded["course"] / "grading" / "feedback"
    autograded = graded["course"] / "grading" / "autograded"
    for student in ("alice", "bob", "dave", "erin", "gina", "ivan"):
        text = _visible_text(feedback / student / LAB / f"{LAB}.html")
        assert "assert add(1, 2) == 3" in text           # the visible test is shown
        for secret in ("add(-7, 12)", "hidden-check", "HIDDEN TESTS", "mean([0.5, 1.5, 4.0])"):
            assert secret not in text, (student, secret)
    # gina's failing hidden assert is quoted by the traceback nbgrader stored: the plugin is what
    # keeps it out of the HTML.
    assert "hidden-check-add" in "".join(
        "".join(o.get("traceback", [])) for o in nbgrading.cell_by_id(
            nbgrading.read_notebook(autograded / "gina" / LAB / f"{LAB}.ipynb"), "test_add").outputs)
    assert "AssertionError" in _visible_text(feedback / "gina" / LAB / f"{LAB}.html")
    # ivan's visible test fails: its message helps him and quotes nothing hidden, so he sees it
    ivan = _visible_text(feedback / "ivan" / LAB / f"{LAB}.html")
    assert "add(1, 2) should be 3" in ivan and "add(-7, 12)" not in ivan
    assert "the kernel exited with status 1 while running this cell" in _visible_text(feedback / "carol" / LAB / f"{LAB}.html")
    assert not (feedback / "hank").exists()


@pytest.mark.slow
def test_submitted_originals_unchanged(graded):
    assert graded["before"] == graded["after"]
    assert len(graded["before"]) == 8  # every submission, the unreadable one included


@pytest.mark.slow
def test_regrading_one_student_keeps_manual_grades_and_other_rows(graded):
    """Runs after the tests above (it changes the course): an instructor grades alice's written
    answer, then re-runs the batch for alice only."""
    course = graded["course"]
    nbgrading.set_manual_full_marks(course, LAB, "alice")
    proc = subprocess.run([str(GRADE), "--course", str(course), "--student", "alice", "--no-feedback"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "grading 1 submission(s) of 1 student(s)" in proc.stdout
    rows = {r["student"]: r for r in _read_csv(course / "grading" / "grades.csv")}
    assert sorted(rows) == sorted(graded["rows"])               # nobody dropped from grades.csv
    assert (float(rows["alice"]["score"]), float(rows["alice"]["manual_pending"])) == (25, 0)
    assert rows["alice"]["status"] == "ok"
    assert rows["bob"]["status"] == "ok (earlier run)" and float(rows["bob"]["score"]) == 10
    assert rows["carol"]["status"] == "ok (earlier run)" and float(rows["carol"]["auto_score"]) == 10


@pytest.mark.slow
def test_cli_timeout_override_and_check_lab(tmp_path):
    """check_lab on the fixture: solution 20/20, release 0, partial (task 1 only) 10; and the
    command-line override --Execute.timeout beats the config's 300 s."""
    result = nbgrading.check_lab(LAB, workdir=tmp_path / "course", source=FIXTURE, cell_timeout=CELL_TIMEOUT)
    assert result.ok, result.problems
    scores = {k: (v.auto_score, v.max_auto_score) for k, v in result.scores.items()}
    assert scores == {"solution": (20, 20), "release": (0, 20), "partial": (10, 20)}
    assert result.scores["solution"].manual_pending == 5

    course = result.course
    bob = _submissions()["bob"]
    nbgrading.submit(course, "bob", LAB, bob)
    start = time.perf_counter()
    proc = nbgrading.autograde(course, LAB, student="bob", cell_timeout=3, timeout=200)
    assert time.perf_counter() - start < 100
    assert "Timeout waiting for execute reply (3s)" in proc.stdout
    assert nbgrading.read_scores(course, LAB, "bob").auto_score == 10


def test_check_lab_rejects_unknown_lab():
    proc = subprocess.run([str(CHECK_LAB), "nolab", "--source", str(FIXTURE)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown lab(s) nolab" in proc.stderr and "available: checked, demo" in proc.stderr
