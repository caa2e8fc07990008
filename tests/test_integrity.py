"""Submissions that game the autograder from inside their own kernel (coursetools/integrity.py).

Fast tests: the code scan flags each trick and nothing in the course's own solutions; the
run-to-the-end check passes a cell that displayed its token and fails one that did not. The slow
test grades, with real `mlsec-grade` (nbgrader, bubblewrap), an honest hand-in and hand-ins that
rewrite or swallow the hidden tests from their first cell.
"""
import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from coursetools import integrity, nbgrading

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "course"
GRADE = Path(sys.executable).with_name("mlsec-grade")
LAB = "demo"

# --------------------------------------------------------------------------------- the code scan
TRICKS = {
    "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])": "get_ipython",
    "ip = get_ipython()\nip.ast_transformers.append(object())": "ast_transformers",
    "import sys\nsys.settrace(lambda *a: None)": "settrace",
    "import torch\ntorch.allclose = lambda *a, **k: True": "assigns to torch.allclose",
    "import numpy as np\nnp.testing.assert_allclose = print": "assigns to np.testing.assert_allclose",
    "import math\nsetattr(math, 'isclose', lambda *a, **k: True)": "setattr",
    "f = lambda: 0\nf.__code__ = (lambda: 1).__code__": "__code__",
    "import builtins\nbuiltins.abs = lambda x: 0": "imports builtins",
    "exec('x = 1')": "exec",
    "import gc\ngc.get_objects()": "imports gc",
    "from labkit import watermark as wm\nwm.verify = lambda *a, **k: 1": "assigns to wm.verify",
    "import os\nos._exit(0)": "os._exit",
    "name = 'all' + 'close'\nimport torch\ngetattr(torch, name)": "getattr() with a computed name",
    "import sys\nsys.modules['torch'].equal = lambda *a: True": "sys.modules",
    "ip = __import__('IPython')": "__import__",
}


@pytest.mark.parametrize("source,rule", list(TRICKS.items()), ids=list(TRICKS.values()))
def test_the_scan_flags_each_trick(source, rule):
    found = integrity.scan_source(source)
    assert any(rule in f.rule for f in found), (source, [f.describe() for f in found])


def test_the_scan_passes_honest_lab_code():
    honest = """
import copy
import torch
import torch.nn.functional as F
from labkit import watermark as wm

def reinit(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():            # .modules() of a model is not sys.modules
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    model.eval()                         # a method called eval is not eval()
    best = getattr(model, "best", None)  # a constant attribute name
    model.threshold = 0.5                # an attribute of one's own object
    return copy.deepcopy(model)
%time x = 1
!ls
"""
    assert integrity.scan_source(honest) == []


@pytest.mark.parametrize("lab", nbgrading.discover_labs(ROOT))
def test_no_model_solution_is_flagged(lab):
    """The scan must not bother honest students: the course's own solutions pass it."""
    src = nbgrading.read_notebook(ROOT / "solutions" / lab / f"{lab}.ipynb")
    assert integrity.scan_notebook(src, source=src) == []


def test_the_scan_skips_the_course_code_and_sees_edits_to_it():
    source = new_notebook(cells=[
        new_code_cell("import sys\nsys.settrace(None)"),  # given code may do what students may not
        new_code_cell("x = 1", metadata={"nbgrader": {"grade": True, "grade_id": "t", "locked": True, "points": 1}}),
    ])
    sub = copy.deepcopy(source)
    assert integrity.scan_notebook(sub, source=source) == []
    sub.cells[1].source = "get_ipython()"  # a locked cell: nbgrader puts the source's version back
    assert integrity.scan_notebook(sub, source=source) == []
    sub.cells[0].source += "\nsys.setprofile(None)"  # an edited plain cell is the student's code
    sub.cells.append(new_code_cell("exec('1')"))  # and so is a new cell
    rules = [f.rule for f in integrity.scan_notebook(sub, source=source)]
    assert any("setprofile" in r for r in rules) and any("exec" in r for r in rules), rules


# ----------------------------------------------------------------------- the run-to-the-end check
def _armed(*cells):
    nb = new_notebook(cells=[new_code_cell(src, metadata={"nbgrader": {"grade": True, "grade_id": gid, "locked": True,
                                                                        "points": 1}}) for gid, src in cells])
    nb, res = integrity.ArmTestCells().preprocess(nb, {})
    return nb, res


def _token_output(res, grade_id, token=None):
    return new_output("display_data", data={integrity.MIME: {"cell": grade_id, "token": token or res["mlsec_integrity"]["token"]}})


def test_armed_cells_end_with_an_assert_that_shows_the_token():
    nb, res = _armed(("a", "assert 1 == 1"), ("b", "x = 2\n"))
    token = res["mlsec_integrity"]["token"]
    for cell in nb.cells:
        last = cell.source.splitlines()[-1]
        assert last.startswith("assert ") and token in last and integrity.MIME in last
    assert res["mlsec_integrity"]["armed"] == {"a": "assert 1 == 1", "b": "x = 2\n"}
    _, res2 = _armed(("a", "pass"))
    assert res2["mlsec_integrity"]["token"] != token  # a new token for every notebook


def test_the_check_passes_cells_that_ran_to_their_end_and_fails_the_others():
    nb, res = _armed(("ran", "assert True"), ("skipped", "assert True"), ("raised", "assert False"),
                     ("forged", "assert True"))
    nb.cells[0].outputs = [new_output("stream", name="stdout", text="hello\n"), _token_output(res, "ran")]
    nb.cells[1].outputs = []  # replaced by `pass`: no error, no token
    nb.cells[2].outputs = [new_output("error", ename="AssertionError", evalue="", traceback=[])]
    nb.cells[3].outputs = [_token_output(res, "forged", token="0" * 32)]  # a guessed token
    nb, res = integrity.CheckTestCells().preprocess(nb, res)
    assert res["mlsec_integrity"]["failed"] == ["skipped", "forged"]
    assert [o.output_type for o in nb.cells[0].outputs] == ["stream"]  # the token is gone
    assert nb.cells[0].source == "assert True"  # and so is the line
    for cell in (nb.cells[1], nb.cells[3]):
        assert [o.ename for o in cell.outputs if o.output_type == "error"] == ["IntegrityError"]
    assert [o.ename for o in nb.cells[2].outputs] == ["AssertionError"]  # failed on its own: left alone
    log = "[AutogradeApp | WARNING] integrity: test cell(s) skipped, forged did not run to their end; scored 0"
    assert integrity.failed_cells_in_log(log) == ["skipped", "forged"]


def test_the_course_config_runs_the_check_around_execution():
    from traitlets.config import PyFileConfigLoader

    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    pps = list(cfg.Autograde.autograde_preprocessors)
    i = pps.index("coursetools.sandbox.SandboxExecute")  # nbgrader's Execute, sandboxed
    assert pps[i - 1] == "coursetools.integrity.ArmTestCells" and pps[i + 1] == "coursetools.integrity.CheckTestCells"
    assert pps.index("nbgrader.preprocessors.SaveAutoGrades") > i + 1  # scores are saved after the check


# --------------------------------------------------------------------------- real grading, slow
ATTACKS = {
    # every later cell becomes `pass`: no error, so nbgrader alone would give full marks
    "eve_transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])",
    # drop every assert from the cells that follow
    "eve_strips_asserts": """
import ast
class _NoAsserts(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()
get_ipython().ast_transformers.append(_NoAsserts())
""",
    # swallow the AssertionError of a failing test: no traceback, so no error output
    "eve_swallows": "get_ipython().set_custom_exc((Exception,), lambda *args, **kwargs: None)",
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = nbgrading.make_course(tmp_path_factory.mktemp("integrity") / "course", [LAB], source=FIXTURE)
    solution = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    release = nbgrading.read_notebook(nbgrading.generate_assignment(course, LAB))
    nbgrading.submit(course, "alice", LAB, solution)
    for name, attack in ATTACKS.items():
        nb = copy.deepcopy(release)
        nbgrading.cell_by_id(nb, "add").source = attack + "\n" + nbgrading.cell_by_id(nb, "add").source
        nbgrading.submit(course, name, LAB, nb)
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=1200, env=env)
    return dict(course=course, proc=proc)


@pytest.mark.slow
def test_games_with_the_kernel_score_zero_and_honest_work_keeps_its_marks(graded):
    course, proc = graded["course"], graded["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(course / "grading" / "grades.csv") as fh:
        auto = {r["student"]: float(r["auto_score"]) for r in csv.DictReader(fh)}
    assert auto["alice"] == 20, auto
    for name in ATTACKS:
        assert auto[name] == 0, (name, auto)


@pytest.mark.slow
def test_the_check_leaves_no_trace_in_the_graded_notebook_and_the_feedback(graded):
    course = graded["course"]
    for student in ("alice", *ATTACKS):
        nb = nbgrading.read_notebook(course / "grading" / "autograded" / student / LAB / f"{LAB}.ipynb")
        text = nbformat.writes(nb)
        assert "mlsec: run-to-the-end" not in text and integrity.MIME not in text, student
        feedback = (course / "grading" / "feedback" / student / LAB / f"{LAB}.html").read_text()
        assert "run-to-the-end" not in feedback
        if student != "alice":
            assert "IntegrityError" in feedback or "NotImplementedError" in feedback, student


@pytest.mark.slow
def test_the_instructor_gets_a_review_list(graded):
    course, proc = graded["course"], graded["proc"]
    with open(course / "grading" / "integrity.csv") as fh:
        rows = list(csv.DictReader(fh))
    flagged = {r["student"] for r in rows}
    assert flagged == set(ATTACKS), rows  # every attacker, and not the honest student
    did_not_run = {r["student"] for r in rows if "did not run to its end" in r["finding"]}
    assert {"eve_transformer", "eve_strips_asserts"} <= did_not_run, rows
    assert "for review: 3 submission(s)" in proc.stdout, proc.stdout
