"""nbgrader plugin: keep hidden tests out of the feedback students receive.

nbgrader 0.9.6 renders the autograded notebook as it was executed, hidden tests included: the
test cell's source shows the ``### BEGIN HIDDEN TESTS`` region, and the traceback of a failing
hidden assert quotes its lines. :class:`HideHiddenTests` (registered in ``nbgrader_config.py`` as a
``GenerateFeedback.preprocessors`` entry, after ``GetGrades``) removes the region from the source,
like ``ClearHiddenTests`` does for the release, and replaces the traceback of an error raised in
such a cell, and its message (a hidden assert's message may quote the reference's values),
by the exception's name.
"""
from __future__ import annotations

from nbgrader.preprocessors import ClearHiddenTests

__all__ = ["HideHiddenTests"]


class HideHiddenTests(ClearHiddenTests):
    """Remove hidden test regions and the tracebacks that could quote them."""

    def preprocess_cell(self, cell, resources, cell_index):
        had_hidden = (self.begin_test_delimeter in cell.source) if cell.cell_type == "code" else False
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if had_hidden:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    # The message goes too: a hidden assert's message may hold the reference's values.
                    output["evalue"] = ""
                    output["traceback"] = [
                        f"{output.get('ename', 'Error')} (details hidden, as they may quote hidden tests; "
                        "run the cell's visible tests in your notebook to see their messages)"
                    ]
        return cell, resources
