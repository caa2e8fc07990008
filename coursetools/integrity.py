"""Checks against a submission that games the autograder from inside its own kernel.

The sandbox (coursetools/sandbox.py) keeps student code away from the course, the gradebook and
the other submissions. It cannot keep the code away from its *own* kernel, where nbgrader runs the
hidden tests after the student's cells: one line such as
``get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])`` turns every later
cell, the tests included, into ``pass``, and nbgrader, which counts a test cell without an error as
passed, would give full marks. Two checks answer this, neither of which trusts the kernel's word:

* **The run-to-the-end check** (:class:`ArmTestCells` before nbgrader's ``Execute``,
  :class:`CheckTestCells` right after it, registered in ``nbgrader_config.py``). Before execution,
  every autograded code cell gets one more line at its end, an ``assert`` that displays a random
  token drawn for this notebook, this run. After execution the token must be in that cell's
  outputs; a test
  cell that ended without an error and without its token did not run as written, and gets an
  ``IntegrityError`` output, so nbgrader scores it 0. The line and its output are then removed:
  the graded notebook and the feedback look as they would without the check.
* **The code scan** (:func:`scan_notebook`, run by ``mlsec-grade`` on the grader's side over the
  code a student wrote or changed). It flags what graded code has no reason to do: reach the
  IPython shell, install trace or profile hooks, touch code objects, frames or builtins, run code
  from strings, or assign to attributes of imported modules (``torch.allclose = ...``). Findings
  go to ``grading/integrity.csv`` for the instructor to review; they do not change a score.

Both raise the bar; neither is a proof. The check catches what changes the cells wholesale (input
transformers, an AST transformer that drops asserts, a custom exception handler that swallows a
failing assert, a patched ``run_cell``). It does not catch code that replaces the functions an
assert calls (``torch.allclose``) or that recognises the check and forges its token (the token is
in the cell's text, which kernel-side code can read); the scan is there to make those visible.
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import json
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

__all__ = ["ArmTestCells", "CheckTestCells", "Finding", "scan_source", "scan_notebook", "failed_cells_in_log", "write_report",
           "MIME", "REPORT_HEADER"]

MIME = "application/vnd.mlsec.check+json"
"""The output type of the run-to-the-end token (never shown: :class:`CheckTestCells` removes it)."""

_LINE_TAG = "# mlsec: run-to-the-end check"


def _graded_code_cells(nb) -> Iterable[tuple[str, object]]:
    """``(grade_id, cell)`` of every autograded code cell."""
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade"):
            yield meta.get("grade_id", f"cell-{i}"), cell


class ArmTestCells(Preprocessor):
    """Append to every autograded code cell a line that displays this run's token for the cell."""

    enabled = Bool(True).tag(config=True)  # nbconvert registers preprocessors disabled unless they say so

    def preprocess(self, nb, resources):
        token = secrets.token_hex(16)
        armed = {}
        for grade_id, cell in _graded_code_cells(nb):
            payload = json.dumps({"cell": grade_id, "token": token})
            # An assert, so that code which strips the asserts of later cells strips the token too.
            line = f"assert __import__('IPython').display.display({{{MIME!r}: {payload}}}, raw=True) is None  {_LINE_TAG}"
            armed[grade_id] = cell.source
            cell.source = cell.source.rstrip("\n") + "\n" + line
        resources["mlsec_integrity"] = {"token": token, "armed": armed}
        return nb, resources


class CheckTestCells(Preprocessor):
    """After execution: fail every armed cell that ended without an error and without its token;
    restore the cells' sources and drop the tokens from their outputs."""

    enabled = Bool(True).tag(config=True)

    def preprocess(self, nb, resources):
        state = resources.get("mlsec_integrity")
        if not state:
            return nb, resources
        token, armed = state["token"], state["armed"]
        failed = []
        for grade_id, cell in _graded_code_cells(nb):
            if grade_id not in armed:
                continue
            cell.source = armed[grade_id]
            seen, kept = False, []
            for out in cell.get("outputs", []):
                data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
                if MIME in data:
                    value = data[MIME]
                    if isinstance(value, str):
                        try:
                            value = json.loads(value)
                        except ValueError:
                            value = {}
                    seen = seen or (isinstance(value, dict) and value.get("cell") == grade_id and value.get("token") == token)
                    continue
                kept.append(out)
            errored = any(out.get("output_type") == "error" for out in kept)
            if not seen and not errored:
                failed.append(grade_id)
                kept.append(_integrity_error(grade_id))
            cell.outputs = kept
        resources["mlsec_integrity"]["failed"] = failed
        if failed:
            self.log.warning("integrity: test cell(s) %s did not run to their end; scored 0", ", ".join(failed))
        return nb, resources


def _integrity_error(grade_id: str):
    from nbformat.v4 import new_output

    message = (f"test cell {grade_id!r} did not run to its end, although it raised no error: code that ran "
               "before it changed how the notebook executes (an IPython input transformer, a trace hook, "
               "or similar). The cell scores 0; ask your instructor if you think this is wrong.")
    return new_output("error", ename="IntegrityError", evalue=message, traceback=[f"IntegrityError: {message}"])


# ------------------------------------------------------------------------------------ the code scan
@dataclasses.dataclass(frozen=True)
class Finding:
    """One suspicious construct in a submission's code."""

    cell: int        # index of the code cell in the notebook
    line: int        # line in that cell (1-based)
    rule: str        # short name of what was found
    code: str        # the line, stripped

    def describe(self) -> str:
        return f"cell {self.cell}, line {self.line}: {self.rule}: {self.code}"


# Modules that graded lab code never needs and that reach the interpreter's machinery.
SUSPICIOUS_MODULES = frozenset({"builtins", "gc", "inspect", "ctypes", "importlib", "IPython", "ipykernel",
                                "dis", "marshal", "code", "codeop", "signal", "atexit", "traitlets",
                                "nbgrader", "nbclient", "jupyter_client", "coursetools"})
# Attributes of the interpreter, the IPython shell and code objects.
SUSPICIOUS_ATTRIBUTES = frozenset({
    "settrace", "setprofile", "_getframe", "f_back", "f_globals", "f_locals", "f_code", "f_builtins",
    "input_transformers_cleanup", "input_transformers_post", "input_transformer_manager",
    "ast_transformers", "register_magic_function", "run_cell", "run_cell_async", "transform_cell",
    "displayhook", "excepthook", "set_custom_exc", "showtraceback", "CodeType", "FunctionType",
})
# Attributes that are only suspicious on one module (``model.modules()`` is honest, ``sys.modules`` is not).
SUSPICIOUS_MODULE_ATTRIBUTES = frozenset({("sys", "modules"), ("sys", "stdout"), ("sys", "stderr"), ("os", "_exit"),
                                          ("os", "kill"), ("os", "killpg"), ("os", "abort"), ("os", "fork")})
SUSPICIOUS_DUNDERS = frozenset({"__code__", "__globals__", "__builtins__", "__closure__", "__subclasses__",
                                "__import__", "__loader__", "__spec__", "__getattribute__", "__setattr__",
                                "__delattr__", "__dict__", "__mro__", "__bases__", "__base__", "__func__",
                                "__self__", "__defaults__", "__kwdefaults__", "__wrapped__"})
SUSPICIOUS_CALLS = frozenset({"exec", "eval", "compile", "__import__", "globals", "vars", "setattr", "delattr",
                              "get_ipython", "breakpoint"})

_MAGIC = re.compile(r"^\s*[%!]")


def _parseable(source: str) -> str:
    """The cell's Python: IPython magics and shell lines become ``pass`` (same line numbers)."""
    return "\n".join("pass" if _MAGIC.match(ln) else ln for ln in source.split("\n"))


def scan_source(source: str, *, cell: int = 0) -> list[Finding]:
    """Findings in one code cell's source (an unparsable cell has none: it fails on its own)."""
    try:
        tree = ast.parse(_parseable(source))
    except SyntaxError:
        return []
    return _scan_tree(tree, source.split("\n"), cell, _imported_names(tree))


def _imported_names(tree) -> set[str]:
    """The names that the imports in ``tree`` bind."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def _root_name(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _scan_tree(tree, lines: list[str], cell: int, modules: set[str]) -> list[Finding]:
    found = []

    def add(node, rule):
        line = getattr(node, "lineno", 1)
        found.append(Finding(cell, line, rule, lines[line - 1].strip() if line - 1 < len(lines) else ""))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                if name.split(".")[0] in SUSPICIOUS_MODULES:
                    add(node, f"imports {name}")
            if isinstance(node, ast.ImportFrom) and node.module == "sys":
                for a in node.names:
                    if a.name in SUSPICIOUS_ATTRIBUTES:
                        add(node, f"imports sys.{a.name}")
        elif isinstance(node, ast.Attribute):
            if node.attr in SUSPICIOUS_DUNDERS:
                add(node, f"uses {node.attr}")
            elif node.attr in SUSPICIOUS_ATTRIBUTES:
                add(node, f"uses .{node.attr}")
            elif isinstance(node.value, ast.Name) and (node.value.id, node.attr) in SUSPICIOUS_MODULE_ATTRIBUTES:
                add(node, f"uses {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in SUSPICIOUS_DUNDERS:
            add(node, f"uses {node.id}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SUSPICIOUS_CALLS:
            add(node, f"calls {node.func.id}()")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
            add(node, "calls getattr() with a computed name")
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for t in (target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]):
                    if isinstance(t, ast.Attribute) and _root_name(t) in modules:
                        add(node, f"assigns to {ast.unparse(t)}, an attribute of an imported module")
    return sorted(set(found), key=lambda f: (f.line, f.rule))


def scan_notebook(nb, *, source=None) -> list[Finding]:
    """Findings in every code cell of ``nb`` that the student wrote or changed.

    Args:
        nb: the submitted notebook (an ``nbformat`` node).
        source: the lab's source notebook (``solutions/<lab>/<lab>.ipynb``). Cells that nbgrader
            replaces by the source's version before grading (locked cells, by ``grade_id``) and
            the source's plain code cells, where the submission kept them unchanged, are skipped:
            they are the course's code, not the student's.
    """
    locked, given = set(), set()
    if source is not None:
        for c in source.cells:
            if c.cell_type != "code":
                continue
            meta = c.get("metadata", {}).get("nbgrader", {})
            if meta.get("locked") and not meta.get("solution") and meta.get("grade_id"):
                locked.add(meta["grade_id"])
            elif not meta:
                given.add(c.source.strip())
    found = []
    modules: set[str] = set()
    for i, cell in enumerate(nb.cells):  # imports of earlier cells count: modules live across cells
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_parseable(cell.source))
        except SyntaxError:
            continue
        modules |= _imported_names(tree)
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id") in locked or cell.source.strip() in given:
            continue
        found += _scan_tree(tree, cell.source.split("\n"), i, modules)
    return found


_FAILED_LOG = re.compile(r"integrity: test cell\(s\) (.+?) did not run to their end")


def failed_cells_in_log(log: str) -> list[str]:
    """The test cells that :class:`CheckTestCells` failed, from an ``nbgrader autograde`` log."""
    return [name.strip() for m in _FAILED_LOG.finditer(log) for name in m.group(1).split(",")]


REPORT_HEADER = ("student", "lab", "cell", "line", "finding", "code")


def write_report(path: Path | str, findings: dict[tuple[str, str], list[Finding]]) -> Path:
    """``grading/integrity.csv``: one row per finding, for the instructor to review."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(REPORT_HEADER)
        for (student, lab), items in sorted(findings.items()):
            for f in items:
                w.writerow((student, lab, f.cell, f.line, f.rule, f.code))
    return path
