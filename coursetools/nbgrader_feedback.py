"""nbgrader plugin: keep hidden tests out of the feedback students receive.

nbgrader 0.9.6 renders the autograded notebook as it was executed, hidden tests included: the
test cell's source shows the ``### BEGIN HIDDEN TESTS`` region, and the traceback of a failing
hidden assert quotes its lines. :class:`HideHiddenTests` (registered in ``nbgrader_config.py`` as
the ``GenerateFeedback.preprocessors`` entry ``"coursetools.nbgrader_feedback.HideHiddenTests"``,
after ``GetGrades``) removes the region from the source, like ``ClearHiddenTests`` does for the
release, and rewrites the error of such a cell:

* when the failing line lies **before** the hidden region (a visible test failed, so no hidden
  test ran), the student sees the exception and its message, which the visible test wrote;
* otherwise (a hidden test failed, or the line cannot be told) only the exception's name: a hidden
  assert's message may quote the reference's values.

The traceback itself is always dropped: IPython prints the lines around the failing one, and those
may belong to the hidden region.
"""
from __future__ import annotations

import re

from nbgrader.preprocessors import ClearHiddenTests

__all__ = ["HideHiddenTests", "failing_line"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CELL_FRAME = re.compile(r"Cell In\s*\[\s*\d*\s*\],\s*line (\d+)")


def failing_line(traceback: list[str]) -> int | None:
    """Line (1-based) of the executed cell where an IPython traceback says the error arose, or None.

    The first ``Cell In[n], line L`` frame is the executed cell itself; later frames belong to
    functions it called (possibly defined in other cells).
    """
    for entry in traceback:
        match = _CELL_FRAME.search(_ANSI.sub("", entry))
        if match:
            return int(match.group(1))
    return None


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden test regions and the tracebacks that could quote them."""

    def preprocess_cell(self, cell, resources, cell_index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not (meta.get("grade") and not meta.get("solution")):
            # Only test cells hold hidden tests (autograde restores them from the gradebook). Any
            # other cell is the student's own text, shown as written, even if it quotes a marker.
            return cell, resources
        hidden_from = None  # 1-based line of the hidden region's opening delimiter
        if cell.cell_type == "code":
            for number, line in enumerate(cell.source.splitlines(), start=1):
                if self.begin_test_delimeter in line:
                    hidden_from = number
                    break
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden_from is None:
            return cell, resources
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            name = output.get("ename", "Error")
            line = failing_line(output.get("traceback", []))
            if line is not None and line < hidden_from:
                message = output.get("evalue", "")
                output["traceback"] = [f"{name}: {message}" if message else name,
                                       f"(raised at line {line} of this cell, in its visible tests)"]
            else:
                output["evalue"] = ""
                output["traceback"] = [
                    f"{name} (details hidden, as they may quote hidden tests; "
                    "run the cell's visible tests in your notebook to see their messages)"
                ]
        return cell, resources
