"""Hidden checks outside the student's process (coursetools/checks.py, run by coursetools/sandbox.py).

Fast tests: the data format only rebuilds plain values (nothing a kernel sends can run code or
compare equal to anything), and a check's secret lines are what the edition and the feedback are
searched for. The slow tests grade the fixture lab "checked" (tests/fixtures/course: its hidden
checks live in solutions/checked/hidden_checks.py) with the real `mlsec-grade`, in the real sandbox:
the solution scores full marks, the release 0, a partial hand-in 10, and each cheating hand-in
(the blank release plus a trick a student who has read this repository would try) exactly what its
honest code earns: 0. No line of the hidden checks reaches any feedback.
"""
import copy
import csv
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from coursetools import checks, nbgrading

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "checked"


# ------------------------------------------------------------------------------------ the format
def _trip(value):
    return checks.decode(json.loads(json.dumps(checks.encode(value))))


def test_values_survive_the_trip_as_plain_types():
    value = {"n": 3, "x": 2.5, "nan": float("nan"), "big": 2**70, "s": "é", "t": (1, None, True),
             "w": torch.arange(6, dtype=torch.int64).reshape(2, 3), "f": torch.tensor([0.5, -1.0], dtype=torch.float64)}
    back = _trip(value)
    assert back["n"] == 3 and back["big"] == 2**70 and back["t"] == (1, None, True) and back["s"] == "é"
    assert back["nan"] != back["nan"]
    assert type(back["w"]) is torch.Tensor and back["w"].dtype == torch.int64 and back["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert torch.equal(back["f"], value["f"])


def test_what_a_kernel_sends_is_rebuilt_without_its_classes():
    class AlwaysEqual(float):
        def __eq__(self, other):
            return True

    # encode refuses subclasses it does not know ...
    with pytest.raises(checks.CheckProtocolError):
        checks.encode(AlwaysEqual(1.0))
    # ... and decode rebuilds only plain values: a float is a float, a tensor a torch.Tensor
    back = checks.decode({"$list": [1.5, {"$tensor": {"dtype": "float32", "shape": [2], "data": "AACAPwAAAEA="}}]})
    assert type(back[0]) is float and type(back[1]) is torch.Tensor and back[1].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("data", [
    {"$pickle": "gASVAAAAAAAAAAA="},                                             # not the format
    {"$tensor": {"dtype": "object", "shape": [1], "data": ""}},                  # no object dtype
    {"$tensor": {"dtype": "float32", "shape": [3], "data": "AACAPwAAAEA="}},      # 8 bytes for 3 floats
    {"$dict": [[{"$list": [1]}, 2]]},                                            # a list as a key
    {"$float": "1e308*10"},
    [1, 2],                                                                      # a bare list
])
def test_malformed_answers_are_refused(data):
    with pytest.raises(checks.CheckProtocolError):
        checks.decode(data)


def test_a_record_is_read_only_and_names_its_fields():
    rec = checks.decode({"$dataclass": "labkit.x.G", "fields": {"mu": 1.0}})
    assert rec.mu == 1.0
    with pytest.raises(AttributeError, match="fields: \\['mu'\\]"):
        rec.sigma
    with pytest.raises(AttributeError):
        rec.mu = 2.0


def test_secret_lines_leave_out_what_the_feedback_shows():
    lines = checks.secret_lines(FIXTURE / "solutions" / LAB / checks.CHECKS_FILE)
    assert 'got = kernel.call("add", -7, 12)' in lines
    assert not any("add on negative numbers" in line for line in lines)  # a docstring: the check's name
    assert not any(line.startswith(("import", "from", "@check")) for line in lines)


def test_checks_register_per_grade_cell():
    found = checks.load_checks(FIXTURE / "solutions" / LAB / checks.CHECKS_FILE)
    assert [(c.cell, c.name) for c in found] == [("test_add", "add_negative"), ("test_add", "add_floats"),
                                                ("test_normalize", "normalize_random")]
    with pytest.raises(RuntimeError, match="load_checks"):
        checks.check("test_add")(lambda kernel: None)


# ----------------------------------------------------------------------------- real grading
# Each attacker hands in the blank release with its trick in the first solution cell.
ATTACKS = {
    # every later cell (and every call the grader sends) keeps only its last line
    "cheat_transformer": "get_ipython().input_transformers_cleanup.append(lambda lines: lines[-1:])",
    # every statement but the last wrapped in try/except
    "cheat_ast": """
import ast
class Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        body = [ast.Try(body=[s], handlers=[ast.ExceptHandler(type=None, name=None, body=[ast.Pass()])], orelse=[], finalbody=[])
                for s in node.body[:-1]] + node.body[-1:]
        node.body = body
        return ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(Swallow())
""",
    # errors swallowed, and the run-to-the-end token shown for them
    "cheat_exc_handler": """
import re
def _handler(shell, etype, value, tb, tb_offset=None):
    cell = shell.user_ns.get('_ih', [''])[-1]
    for token in re.findall(r"mlsec-integrity-[0-9a-f]+", cell):
        print(token)
get_ipython().set_custom_exc((BaseException,), _handler)
""",
    # answers that compare equal to anything, and comparisons patched
    "cheat_equal": """
import torch, math, builtins
class Anything(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = float.__hash__
def add(a, b):
    return Anything(0.0)
class Everything(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return True
def normalize(x):
    return torch.zeros(1).as_subclass(Everything)
torch.allclose = lambda *a, **k: True
math.isclose = lambda *a, **k: True
""",
    # hooks on every IPython event that print what the kernel is sent (the grader's calls included)
    "cheat_hooks": """
seen = []
for event in ('pre_execute', 'pre_run_cell', 'post_execute', 'post_run_cell'):
    get_ipython().events.register(event, lambda *a, **k: seen.append(str(get_ipython().user_ns.get('_ih', [''])[-1])[:2000]))
""",
    # the references, from labkit's source or from the repository
    "cheat_references": """
import inspect, glob, labkit
from labkit.membership import lira
print('LIRA', inspect.getsource(lira.loss_score))
import os
for top in ('/work', '/root', '/home', '/srv', '/tmp', '/run', os.path.dirname(os.path.dirname(labkit.__file__))):
    for folder, _, files in os.walk(top):
        for name in files:
            if name == 'hidden_checks.py' or (folder.rstrip('/').split('/')[-2:-1] == ['solutions']):
                print('FOUND', os.path.join(folder, name), open(os.path.join(folder, name)).read())
""",
}
# printed by a later cell: what the hooks saw and the kernel's history
SPY = "print('SPY', seen if 'seen' in globals() else None, _ih, list(globals()))"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = nbgrading.make_course(tmp_path_factory.mktemp("checks") / "course", [LAB], source=FIXTURE)
    solution = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    release = nbgrading.read_notebook(nbgrading.generate_assignment(course, LAB))
    nbgrading.submit(course, "solution", LAB, solution)
    nbgrading.submit(course, "release", LAB, release)
    nbgrading.submit(course, "partial", LAB, nbgrading.make_partial(release, solution))
    for name, attack in ATTACKS.items():
        nb = copy.deepcopy(release)
        cell = nbgrading.cell_by_id(nb, "add")
        cell.source = cell.source + "\n" + attack  # after the stub, so that its own add counts
        nbgrading.cell_by_id(nb, "normalize").source += "\n" + SPY
        nbgrading.submit(course, name, LAB, nb)
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--dashboard", ":0"],
                          capture_output=True, text=True, timeout=1200, env=env)
    rows = {r["student"]: r for r in csv.DictReader(open(course / "grading" / "grades.csv"))}
    return dict(course=course, proc=proc, rows=rows)


@pytest.mark.slow
def test_solution_full_release_zero_partial_between(graded):
    assert graded["proc"].returncode == 0, graded["proc"].stdout + graded["proc"].stderr
    auto = {s: float(r["auto_score"]) for s, r in graded["rows"].items()}
    assert (auto["solution"], auto["release"], auto["partial"]) == (20, 0, 10), auto


@pytest.mark.slow
def test_every_cheat_scores_what_its_honest_code_earns(graded):
    auto = {s: float(r["auto_score"]) for s, r in graded["rows"].items()}
    for name in ATTACKS:
        assert auto[name] == 0, (name, auto[name], graded["rows"][name]["status"])


@pytest.mark.slow
def test_no_hidden_check_reaches_any_feedback_or_output(graded):
    course = graded["course"]
    secrets = checks.secret_lines(FIXTURE / "solutions" / LAB / checks.CHECKS_FILE)
    assert len(secrets) >= 5
    for student in graded["rows"]:
        page = course / "grading" / "feedback" / student / LAB / f"{LAB}.html"
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        assert not [line for line in secrets if line in text], student
        assert "kernel.call" not in text
        nb = (course / "grading" / "autograded" / student / LAB / f"{LAB}.ipynb").read_text()
        assert "kernel.call" not in nb and "-7, 12" not in nb, student  # no hidden input in a saved output
    nb = nbgrading.read_notebook(course / "grading" / "autograded" / "cheat_references" / LAB / f"{LAB}.ipynb")
    spy = "".join(o.get("text", "") for o in nbgrading.cell_by_id(nb, "add").outputs)
    # the kernel holds the stubbed labkit and no file of the course
    assert "LIRA def loss_score" in spy and "raise NotImplementedError" in spy and "FOUND" not in spy, spy[-500:]


@pytest.mark.slow
def test_the_feedback_names_each_check_and_its_verdict(graded):
    course = graded["course"]
    page = html.unescape((course / "grading" / "feedback" / "partial" / LAB / f"{LAB}.html").read_text())
    assert "[passed] add on negative numbers" in page and "[passed] add on floats" in page
    assert "HiddenCheckFailed" in html.unescape(
        (course / "grading" / "feedback" / "cheat_equal" / LAB / f"{LAB}.html").read_text())
