"""LMS import and export (coursetools/lms.py: mlsec-collect, mlsec-export) on the fixture course
(tests/fixtures/course, lab "demo": 20 autograded points and a written answer of 5).

Collect runs nbgrader's real zip_collect on a zip named as Canvas names its bulk downloads, with
files it cannot map. Export reads a real nbgrader gradebook, filled through nbgrader's API as
autograde and formgrader would fill it.
"""
import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coursetools import lms, nbgrading

ROOT = Path(__file__).resolve().parents[1]
COLLECT = Path(sys.executable).with_name("mlsec-collect")
EXPORT = Path(sys.executable).with_name("mlsec-export")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
NOTEBOOK = (FIXTURE / "solutions" / LAB / f"{LAB}.ipynb").read_bytes()


def test_named_regexp_checks_and_anchors_the_pattern():
    regexp = lms.named_regexp("plain")
    import re

    m = re.match(regexp, "/dl/extracted/x/alice_demo.ipynb")
    assert (m["student_id"], m["file_id"]) == ("alice", "demo.ipynb")
    m = re.match(lms.named_regexp("canvas"), "/x/doejane_LATE_1234_5678_demo-1.ipynb")
    assert (m["student_id"], m["file_id"]) == ("1234", "demo-1.ipynb")
    m = re.match(lms.named_regexp("moodle"), "/x/Jane Doe_77_assignsubmission_file_/demo.ipynb")
    assert (m["student_id"], m["file_id"]) == ("77", "demo.ipynb")
    with pytest.raises(ValueError, match="named groups .* without file_id"):
        lms.named_regexp(r"(?P<student_id>\w+)\.ipynb")
    with pytest.raises(ValueError, match="expected a regular expression"):
        lms.named_regexp("(?P<student_id>")


def test_collect_rejects_what_is_not_a_download(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    (tmp_path / "grades.txt").write_text("not a zip")
    proc = subprocess.run([str(COLLECT), LAB, str(tmp_path / "grades.txt"), "--course", str(course)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "expected an LMS download: a zip file or a folder" in proc.stderr
    proc = subprocess.run([str(COLLECT), "nolab", str(tmp_path), "--course", str(course)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "got 'nolab'" in proc.stderr and "['demo']" in proc.stderr


@pytest.mark.slow
def test_collect_a_canvas_zip_and_report_what_it_cannot_map(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    download = tmp_path / "submissions.zip"
    late = NOTEBOOK.replace(b"Demo lab", b"Demo lab, late")
    with zipfile.ZipFile(download, "w") as zf:
        zf.writestr("doejane_1234_5678_demo.ipynb", NOTEBOOK)
        zf.writestr("smithbob_LATE_2345_6789_demo-1.ipynb", late)   # a numbered copy: still demo.ipynb
        zf.writestr("notes.txt", "not a submission")                 # no match
        zf.writestr("my_homework.ipynb", NOTEBOOK)                   # no match
        zf.writestr("roefred_3456_7890_other.ipynb", NOTEBOOK)       # not a notebook of the lab
    proc = subprocess.run([str(COLLECT), LAB, str(download), "--course", str(course), "--pattern", "canvas"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    submitted = nbgrading.course_dir(course, "submitted")
    files = sorted(str(p.relative_to(submitted)) for p in submitted.rglob("*") if p.is_file())
    assert files == ["1234/demo/demo.ipynb", "2345/demo/demo.ipynb"]
    assert (submitted / "1234" / LAB / "demo.ipynb").read_bytes() == NOTEBOOK  # copied byte for byte
    assert (submitted / "2345" / LAB / "demo.ipynb").read_bytes() == late
    assert "3 file(s) not collected" in proc.stderr
    for name in ("notes.txt", "my_homework.ipynb", "roefred_3456_7890_other.ipynb"):
        assert name in proc.stderr
    assert "notes.txt: refused: not a notebook" in proc.stderr
    assert "roefred_3456_7890_other.ipynb: 'other.ipynb' is not a notebook of the lab" in proc.stderr
    assert download.is_file()  # the download itself is left as it was

    # Collecting again does not replace a submission unless --force is given.
    (submitted / "1234" / LAB / "demo.ipynb").write_bytes(b"{}")
    again = lms.collect(course, LAB, download, pattern="canvas")
    assert (submitted / "1234" / LAB / "demo.ipynb").read_bytes() == b"{}"
    assert again[0] == []
    lms.collect(course, LAB, download, pattern="canvas", force=True)
    assert (submitted / "1234" / LAB / "demo.ipynb").read_bytes() == NOTEBOOK


@pytest.mark.slow
def test_export_writes_the_lms_csv_and_feedback_zips(tmp_path):
    from nbgrader.api import Gradebook

    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    nbgrading.generate_assignment(course, LAB)  # the lab in the gradebook: 10 + 10 + 5 points
    with Gradebook(nbgrading.gradebook_url(course), "mlsec") as gb:
        for student, (add, mean, answer) in {"alice": (10, 10, 5), "bob": (10, 0, None), "carol": (0, 0, 0)}.items():
            gb.update_or_create_student(student)
            gb.add_submission(LAB, student)
            for cell, score in (("test_add", add), ("test_mean", mean)):
                gb.find_grade(cell, LAB, LAB, student).auto_score = score
            written = gb.find_grade("answer_outliers", LAB, LAB, student)
            written.manual_score, written.needs_manual_grade = answer, answer is None
        gb.update_or_create_student("dave")  # in the class, handed nothing in
        gb.db.commit()
    feedback = nbgrading.course_dir(course, "feedback")
    for student in ("alice", "bob"):
        (feedback / student / LAB).mkdir(parents=True)
        (feedback / student / LAB / f"{LAB}.html").write_text(f"<p>feedback for {student}</p>")
    proc = subprocess.run([str(EXPORT), "--course", str(course)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    grading = course / "grading"
    with open(grading / "lms_grades.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["student_id", LAB, "total"], ["alice", "25", "25"], ["bob", "10", "10"],
                    ["carol", "0", "0"], ["dave", "0", "0"]]
    assert "5 points of written answers still wait for manual grading" in proc.stderr  # bob's answer
    with zipfile.ZipFile(grading / "lms_feedback" / "alice.zip") as zf:
        assert zf.namelist() == [f"{LAB}/{LAB}.html"]
        assert zf.read(f"{LAB}/{LAB}.html") == b"<p>feedback for alice</p>"
    assert sorted(p.name for p in (grading / "lms_feedback").iterdir()) == ["alice.zip", "bob.zip"]
    assert "carol: no feedback HTML" in proc.stderr
