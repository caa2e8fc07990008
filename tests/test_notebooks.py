"""Every lab in solutions/ grades as intended through the real nbgrader pipeline.

Per lab, once (module-scoped fixture, see coursetools/nbgrading.py:check_lab): a throwaway copy
of the course, `nbgrader generate_assignment`, and one `nbgrader autograde` call for three
students: the solution notebook, the released stub notebook and a partial submission (the release
with only its first solution cell filled in). Each notebook is executed exactly once.
"""
from pathlib import Path

import pytest

from coursetools import nbgrading

ROOT = Path(__file__).resolve().parents[1]

LABS = nbgrading.discover_labs(ROOT)
TOTAL_POINTS = 100


@pytest.fixture(scope="module", params=LABS)
def checked(request, tmp_path_factory):
    lab = request.param
    return nbgrading.check_lab(lab, workdir=tmp_path_factory.mktemp(lab) / "course")


def _auto_cells(score, passing):
    return [g.name for g in score.grades if g.cell_type == "code" and ((g.auto_score or 0) > 0) == passing]


@pytest.mark.slow
def test_solution_scores_every_automatic_point(checked):
    sol = checked.scores["solution"]
    assert sol.max_auto_score > 0
    assert sol.auto_score == sol.max_auto_score, f"failing test cells: {_auto_cells(sol, passing=False)}"


@pytest.mark.slow
def test_solution_with_full_manual_marks_scores_100(checked):
    nbgrading.set_manual_full_marks(checked.course, checked.lab, "solution")
    total = nbgrading.read_scores(checked.course, checked.lab, "solution")
    assert total.manual_pending == 0
    assert (total.score, total.max_score) == (TOTAL_POINTS, TOTAL_POINTS)


@pytest.mark.slow
def test_released_stubs_score_zero(checked):
    rel = checked.scores["release"]
    assert rel.auto_score == 0, f"test cells passing on the stubs: {_auto_cells(rel, passing=True)}"


@pytest.mark.slow
def test_partial_submission_scores_strictly_between(checked):
    par = checked.scores["partial"]
    assert 0 < par.auto_score < par.max_auto_score, f"passing: {_auto_cells(par, passing=True)}"


@pytest.mark.slow
def test_lab_has_100_points_and_a_written_answer(checked):
    sol = checked.scores["solution"]
    assert sol.max_score == TOTAL_POINTS
    written = [g for g in sol.grades if g.cell_type == "markdown"]
    assert written and sol.max_manual_score > 0
    assert all(g.needs_manual_grade for g in written)  # the model answer waits for an instructor


def _comparable(nb):
    """What a release must reproduce: per cell its type, source and nbgrader metadata."""
    return [(c.cell_type, c.source, dict(c.metadata.get("nbgrader", {}))) for c in nb.cells]


@pytest.mark.slow
def test_committed_release_equals_fresh_generation(checked):
    committed = ROOT / "labs" / checked.lab / f"{checked.lab}.ipynb"
    assert committed.is_file(), f"labs/{checked.lab} is missing: run `make release`"
    fresh = nbgrading.read_notebook(checked.course / "labs" / checked.lab / f"{checked.lab}.ipynb")
    ours = nbgrading.read_notebook(committed)
    assert len(ours.cells) == len(fresh.cells), "labs/ is stale: run `make release`"
    for i, (a, b) in enumerate(zip(_comparable(ours), _comparable(fresh))):
        assert a == b, f"cell {i} of labs/{checked.lab} differs from a fresh release: run `make release`"
    assert ours.metadata.get("kernelspec") == fresh.metadata.get("kernelspec")
    # the release folder holds the same files (data shipped with the lab)
    names = {p.relative_to(committed.parent).as_posix() for p in committed.parent.rglob("*")
             if p.is_file() and ".ipynb_checkpoints" not in p.parts}
    fresh_dir = checked.course / "labs" / checked.lab
    assert names == {p.relative_to(fresh_dir).as_posix() for p in fresh_dir.rglob("*") if p.is_file()}


def _hidden_lines(nb):
    """Lines of the hidden test regions that appear nowhere else in the notebook (not even inside a
    longer visible line, which the feedback shows and which would contain them)."""
    hidden, elsewhere = set(), set()
    for cell in nb.cells:
        inside = False
        for line in cell.source.split("\n"):
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif len(line.strip()) >= 16:
                (hidden if inside else elsewhere).add(line.strip())
    return {h for h in hidden if not any(h in e for e in elsewhere)}


def _check_lines(lab_dir):
    """The distinctive lines of the lab's hidden_checks.py (coursetools/checks.py), when it has one."""
    from coursetools import checks

    path = lab_dir / checks.CHECKS_FILE
    return checks.secret_lines(path) if path.is_file() else set()


@pytest.mark.slow
def test_feedback_html_shows_no_hidden_test(checked):
    import html
    import re

    solution = nbgrading.read_notebook(checked.course / "solutions" / checked.lab / f"{checked.lab}.ipynb")
    hidden = _hidden_lines(solution) | _check_lines(checked.course / "solutions" / checked.lab)
    assert hidden, "the lab has no hidden tests"
    for student in ("solution", "partial"):   # all tests passing; most failing (tracebacks)
        nbgrading.generate_feedback(checked.course, checked.lab, student=student)
        page = checked.course / "grading" / "feedback" / student / checked.lab / f"{checked.lab}.html"
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        assert "BEGIN HIDDEN TESTS" not in text
        leaked = sorted(line for line in hidden if line in text)
        assert not leaked, f"{student}'s feedback shows hidden test lines: {leaked[:3]}"


@pytest.mark.parametrize("lab", LABS)
def test_every_written_answer_follows_its_question(lab):
    """A manually graded answer cell comes right after a markdown cell that asks for it, with its points."""
    import nbformat

    nb = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    answers = [(i, c) for i, c in enumerate(nb.cells)
               if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
    assert answers, f"{lab} has no written answer"
    for i, cell in answers:
        points = cell.metadata["nbgrader"]["points"]
        before = nb.cells[i - 1] if i else None
        assert before is not None and before.cell_type == "markdown" and not before.metadata.get("nbgrader"), \
            f"{lab}: answer {cell.metadata['nbgrader']['grade_id']} is not preceded by a question cell"
        assert f"({points:g} points)" in before.source, \
            f"{lab}: the question before {cell.metadata['nbgrader']['grade_id']} does not state its {points:g} points"


@pytest.mark.parametrize("lab", LABS)
def test_partial_credit_is_fair_and_manual_points_have_rubrics(lab):
    """No test cell is worth more than 10 points, and each says in its docstring what it checks;
    every written answer's model answer carries a rubric for graders; the lab states its effort."""
    import re

    import nbformat

    nb = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    tests = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    assert tests, f"{lab} has no test cell"
    for cell in tests:
        meta = cell.metadata["nbgrader"]
        assert meta["points"] <= 10, f"{lab}: {meta['grade_id']} is worth {meta['points']} points (at most 10)"
        assert re.match(r'^"""[^\n]+"""', cell.source), f"{lab}: {meta['grade_id']} does not start with a one-line docstring"
    answers = [c for c in nb.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("grade")]
    for cell in answers:
        assert "rubric" in cell.source.lower(), f"{lab}: the model answer {cell.metadata['nbgrader']['grade_id']} has no rubric"
    intro = nb.cells[0].source.lower()
    assert "effort" in intro and "hour" in intro, f"{lab}: the first cell does not state the expected effort in hours"
