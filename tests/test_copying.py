"""Copying the reference earns nothing: a Lab 4b submission that binds every graded name to a fresh
function object around labkit's reference code (no code of its own) scores 0 through real
`nbgrader autograde`. Lab 4b's hidden checks run outside the kernel, whose labkit is the student
edition's: there is no reference body to copy, so each copy raises the stub's NotImplementedError."""
import pytest

from coursetools import nbgrading

LAB = "lab4b_lira"
COPIES = """
import types
import labkit.membership.lira as _L
import labkit.metrics as _M


def _copy(f):
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
    g.__kwdefaults__ = f.__kwdefaults__
    return g


loss_score, confidence_score, entropy_score = _copy(_L.loss_score), _copy(_L.confidence_score), _copy(_L.entropy_score)
logit_scale, fit_lira_gaussians = _copy(_L.logit_scale), _copy(_L.fit_lira_gaussians)
lira_online, lira_offline, tpr_at_fpr = _copy(_L.lira_online), _copy(_L.lira_offline), _copy(_M.tpr_at_fpr)
"""


@pytest.mark.slow
def test_a_submission_of_copied_reference_code_scores_zero(tmp_path):
    course = nbgrading.make_course(tmp_path / "course", [LAB])
    nb = nbgrading.read_notebook(nbgrading.generate_assignment(course, LAB))
    solution_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    solution_cells[0].source = COPIES
    for cell in solution_cells[1:]:
        cell.source = "pass"
    nbgrading.submit(course, "copycat", LAB, nb)
    proc = nbgrading.autograde(course, LAB, student="copycat", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    score = nbgrading.read_scores(course, LAB, "copycat")
    assert score.max_auto_score == 70 and score.auto_score == 0, score
    graded = nbgrading.read_notebook(nbgrading.course_dir(course, "autograded") / "copycat" / LAB / f"{LAB}.ipynb")
    errors = [o.get("ename") for c in graded.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors.count("NotImplementedError") >= 6, errors  # the copies are copies of the stubs
