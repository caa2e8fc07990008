"""The student edition (coursetools/student.py, `make student`): no answer key, and every lab works in it.

Fast tests build the edition into a temporary folder and read it. The slow ones install it as a
student would (`make setup` in the edition: a fresh venv from the edition's own requirements) and
execute every released notebook there twice: as released (only the lab's own graded cells and what
follows from them may fail) and with the model solutions pasted into its solution cells (everything
runs, the visible tests pass).
"""
import inspect
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from coursetools import nbgrading, student

ROOT = Path(__file__).resolve().parents[1]
LABS = nbgrading.discover_labs(ROOT)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "student"
    return student.build(ROOT, out, book=False)


def _edition_env(edition_dir: Path) -> dict:
    """An environment whose Python imports the edition's labkit (PYTHONPATH comes before the
    course's editable install)."""
    import os

    return dict(os.environ, PYTHONPATH=str(edition_dir))


def _stub_calls(edition_dir: Path) -> dict:
    """Call every stubbed function of the edition's labkit (None for each parameter) in a fresh
    interpreter that imports the edition's labkit; {function: the NotImplementedError's message}."""
    names = sorted({r.function for r in student.regions(ROOT)})
    code = f"""
import importlib, inspect, json
import labkit
assert labkit.__file__.startswith({str(edition_dir)!r}), labkit.__file__
out = {{}}
for name in {names!r}:
    mod, func = name.rsplit(".", 1)
    f = getattr(importlib.import_module(mod), func)
    kwargs = {{p.name: None for p in inspect.signature(f).parameters.values()
              if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}}
    try:
        f(**kwargs)
        out[name] = "returned"
    except NotImplementedError as e:
        out[name] = str(e)
    except Exception as e:
        out[name] = f"{{type(e).__name__}}: {{e}}"
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=300,
                          env=_edition_env(edition_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


# --------------------------------------------------------------------------- the marks
def test_every_graded_labkit_function_is_marked_for_its_lab():
    """A function a lab asks students to write that has a labkit namesake must be marked for that lab."""
    import importlib

    marked = {(r.name, r.lab) for r in student.regions(ROOT)}
    assert len(marked) >= 25
    public = {}
    for path in (ROOT / "labkit").rglob("*.py"):
        mod = importlib.import_module(student._module_name(path, ROOT))
        for name, obj in vars(mod).items():
            if inspect.isfunction(obj) and obj.__module__ == mod.__name__:
                public.setdefault(name, obj)
    for lab in LABS:
        nb = nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                for name in re.findall(r"^def (\w+)\(", cell.source, re.M):
                    if name in public:
                        assert (name, lab) in marked, f"{lab} grades {name}, but labkit's {name} is not marked for {lab}"


def test_every_mark_names_a_lab_and_a_task():
    for r in student.regions(ROOT):
        task = student.task_of(ROOT, r.lab, r.task_function)
        assert task.heading.startswith("Task"), (r.function, task)
        assert task.lab_title.startswith("Lab "), task


@pytest.mark.parametrize("text, complaint", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n", "must name the lab"),
    ("def f():\n    ### BEGIN SOLUTION lab1_x\n    return 1\n", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a BEGIN"),
    ("### BEGIN SOLUTION lab1_x\nX = 1\n### END SOLUTION\n", "inside a function"),
    ("def f():\n    ### BEGIN SOLUTION lab1_x\n    ### BEGIN SOLUTION lab1_x\n    return 1\n    ### END SOLUTION\n", "inside the region"),
])
def test_malformed_marks_are_refused(tmp_path, text, complaint):
    (tmp_path / "labkit").mkdir()
    (tmp_path / "labkit" / "m.py").write_text(text)
    with pytest.raises(student.EditionError, match=complaint):
        student.regions(tmp_path)


# --------------------------------------------------------------------------- what the edition holds
def test_edition_holds_what_a_student_needs_and_nothing_of_the_instructor(edition):
    names = {p.name for p in edition.iterdir()}
    assert {"labs", "labkit", "README.md", "requirements.txt", "pyproject.toml", "Makefile", "nbgrader_config.py"} <= names
    assert not names & {"solutions", "grading", "coursetools", "tests", "benchmarks", "docs", "book", ".ci"}
    assert sorted(p.name for p in (edition / "labs").iterdir()) == LABS
    for lab in LABS:  # the released notebooks, byte for byte
        assert (edition / "labs" / lab / f"{lab}.ipynb").read_bytes() == (ROOT / "labs" / lab / f"{lab}.ipynb").read_bytes()
    req = (edition / "requirements.txt").read_text()
    assert "torch==" in req and "nbgrader==" in req and "jupyterlab" in req and "-e ." in req
    assert "jupyter-book" not in req and "pytest" not in req
    assert 'include = ["labkit*"]' in (edition / "pyproject.toml").read_text()
    assert 'EDITION = "student"' in (edition / "labkit" / "__init__.py").read_text()
    readme = (edition / "README.md").read_text()
    assert "make setup" in readme and "Validate" in readme and "Submit" in readme and "upload" in readme
    # each function the README says a student writes is one a task of that lab's notebook names
    for lab, listed in re.findall(r"^\| `labs/(\w+)/\w+\.ipynb` \| [^|]* \| ([^|]*) \|$", readme, flags=re.M):
        names = re.findall(r"`([\w.]+)`", listed)
        assert names, lab
        text = (edition / "labs" / lab / f"{lab}.ipynb").read_text()
        for name in names:
            short = name.rsplit(".", 1)[-1]
            assert not short.startswith("_") and f"def {short}(" in text, (lab, name)
    assert "@jupyter/nbgrader:formgrader" in (edition / "Makefile").read_text()
    with zipfile.ZipFile(edition.parent / "mlsec-student.zip") as z:
        members = z.namelist()
    assert "mlsec-student/labkit/watermark.py" in members and not any("solutions/" in m for m in members)


def test_edition_contains_no_line_of_any_answer(edition):
    secrets = student.secret_lines(ROOT)
    kinds = {origin.split("(")[-1].split(",")[-1].strip(" )") for origin in secrets.values()}
    assert {"solution", "hidden test", "model answer"} <= kinds and any(o.startswith("labkit/") for o in secrets.values())
    assert student.check_edition(edition, ROOT) == []
    zipped = edition.parent / "zipcheck"
    zipped.mkdir()
    shutil.copy(edition.parent / "mlsec-student.zip", zipped)
    assert student.check_edition(zipped, ROOT) == []


def test_the_leak_check_finds_a_planted_answer(edition, tmp_path):
    copy = tmp_path / "student"
    shutil.copytree(edition, copy)
    region = next(r for r in student.regions(ROOT) if r.name == "verify")
    line = next(ln.strip() for ln in region.code if len(ln.strip()) >= student.MIN_LEAK_LINE)
    target = copy / "labkit" / "utils.py"
    target.write_text(target.read_text() + f"\n# {line}\n")
    leaks = student.check_edition(copy, ROOT)
    assert any("labkit/utils.py" in leak and "verify" in leak for leak in leaks), leaks
    # and inside a zip
    with zipfile.ZipFile(tmp_path / "student" / "extra.zip", "w") as z:
        z.writestr("notes.txt", line)
    assert any("extra.zip" in leak for leak in student.check_edition(copy, ROOT))


def test_the_builder_refuses_a_book_that_leaks_and_ships_a_clean_one(tmp_path):
    course = tmp_path / "course"
    for name in ("labkit", "labs", "solutions"):
        shutil.copytree(ROOT / name, course / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, course / name)
    html = course / "_build" / "html"
    html.mkdir(parents=True)
    (html / "index.html").write_text("<html><body><h1>The book</h1></body></html>")
    out = student.build(course, tmp_path / "clean", make_zip=False)
    assert (out / "book" / "index.html").is_file()
    leaked = next(r for r in student.regions(ROOT) if r.name == "mi_face")
    line = next(ln.strip() for ln in leaked.code if len(ln.strip()) >= student.MIN_LEAK_LINE)
    (html / "chapter.html").write_text(f"<pre><span>{line}</span></pre>")
    with pytest.raises(student.EditionError, match="would leak"):
        student.build(course, tmp_path / "leaky", make_zip=False)
    assert not (tmp_path / "leaky").exists(), "nothing is written when the edition would leak"


def test_every_stub_raises_naming_its_lab_and_task(edition):
    calls = _stub_calls(edition)
    tasks = {r.function: student.task_of(ROOT, r.lab, r.task_function) for r in student.regions(ROOT)}
    for name, message in calls.items():
        task = tasks[name]
        assert message == task.message(name), f"{name}: {message}"
        assert task.lab_title in message and task.heading in message and f"labs/{task.lab}/" in message


def test_unlock_ships_one_labs_references_whole(tmp_path):
    out = student.build(ROOT, tmp_path / "student", make_zip=False, book=False, unlock=("lab1_extraction",))
    calls = _stub_calls(out)
    for name, message in calls.items():
        if name.startswith("labkit.extraction."):
            assert "is graded in" not in message, f"{name} should be whole: {message}"
        else:
            assert "is graded in" in message, name
    assert "BEGIN SOLUTION" not in (out / "labkit" / "extraction.py").read_text()
    with pytest.raises(student.EditionError, match="names no lab"):
        student.build(ROOT, tmp_path / "x", unlock=("lab9_nothing",))


def test_reference_or_picks_by_edition(edition):
    code = ("import labkit, labkit.watermark as wm; from labkit.grading import reference_or; "
            "mine = lambda: 0; print(labkit.__file__.startswith(%r) and reference_or(wm.verify, mine) is mine)") % str(edition)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", check=True,
                         env=_edition_env(edition)).stdout
    assert out.strip() == "True"
    import labkit.watermark as wm
    from labkit.grading import reference_or

    assert reference_or(wm.verify, lambda: 0) is wm.verify


# --------------------------------------------------------------------------- the edition, installed
def _pasted(released: Path, lab: str) -> nbformat.NotebookNode:
    """The released notebook with the model solution in each solution cell (hidden tests stay out)."""
    nb = nbformat.read(released, as_version=4)
    sol = {c.metadata.get("nbgrader", {}).get("grade_id"): c
           for c in nbformat.read(ROOT / "solutions" / lab / f"{lab}.ipynb", as_version=4).cells}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution"):
            cell.source = nbgrading.strip_solution_markers(sol[meta["grade_id"]].source)
    return nb


@pytest.fixture(scope="module")
def executed(installed_edition, tmp_path_factory):
    """Every released notebook executed in the installed edition, as released and with solutions pasted."""
    ed = installed_edition
    notebooks = {}
    for lab in LABS:
        released = ed / "labs" / lab / f"{lab}.ipynb"
        pasted = released.with_name(f"{lab}.pasted.ipynb")
        nbformat.write(_pasted(released, lab), pasted)
        notebooks[(lab, "released")], notebooks[(lab, "pasted")] = released, pasted
    report = tmp_path_factory.mktemp("exec") / "report.json"
    proc = subprocess.run([str(ed / ".venv" / "bin" / "python"), str(ROOT / "tests" / "edition_exec.py"), str(report),
                           *map(str, notebooks.values())], capture_output=True, text=True, cwd=ed, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(report.read_text())
    return {key: results[str(path)] for key, path in notebooks.items()}


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_a_released_lab_fails_only_where_its_student_has_work_to_do(executed, lab):
    run = executed[(lab, "released")]
    assert run["failing"], f"{lab}: the released notebook ran without error: are its tests empty?"
    failed_sources = []
    for f in run["failing"]:
        where = f"{lab} cell {f['cell']} ({f['grade_id']}): {f['ename']}: {f['evalue'][:200]}"
        if f["ename"] == "NotImplementedError":
            # the notebook's own stub (no message), or a labkit stub of this lab, never another lab's
            assert f["evalue"] == "" or f"labs/{lab}/" in f["evalue"], where
        elif f["ename"] == "NameError":
            # a name that an earlier failing cell was to define
            name = re.search(r"name '(\w+)' is not defined", f["evalue"]).group(1)
            assert any(re.search(rf"\b{name}\b", src) for src in failed_sources), where
        else:
            raise AssertionError(where)
        failed_sources.append(f["source"])
    graded = [f for f in run["failing"] if f["test"]]
    assert graded, f"{lab}: no test cell failed"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_a_lab_with_its_solutions_pasted_runs_to_the_end_in_the_edition(executed, lab):
    run = executed[(lab, "pasted")]
    assert run["failing"] == [], f"{lab}: " + "; ".join(
        f"cell {f['cell']} ({f['grade_id']}): {f['ename']}: {f['evalue'][:300]}" for f in run["failing"])
    assert run["seconds"] < 400, f"{lab}: {run['seconds']:.0f} s"


# --------------------------------------------------------------------------- the JupyterHub path
@pytest.mark.slow
def test_a_lab_travels_through_the_nbgrader_exchange(edition, tmp_path):
    """Instructor releases, a student (in the edition) fetches and submits, the instructor collects:
    nbgrader's own commands, the exchange folder of MLSEC_EXCHANGE."""
    lab = "lab1_extraction"
    course = tmp_path / "course"
    course.mkdir()
    for name in ("solutions", "labs"):
        shutil.copytree(ROOT / name, course / name)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    import os

    bin_dir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH to create a gradebook
    env = dict(os.environ, MLSEC_EXCHANGE=str(exchange), HOME=str(tmp_path / "home"),
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    nbgrader = str(Path(bin_dir) / "nbgrader")

    def run(args, cwd):
        proc = subprocess.run([nbgrader, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"nbgrader {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        return proc.stdout + proc.stderr

    run(["db", "assignment", "add", lab], course)
    run(["release_assignment", lab, "--force"], course)
    assert (exchange / "mlsec" / "outbound" / lab / f"{lab}.ipynb").is_file()
    home = edition.parent / "hub-home"
    home.mkdir()
    run(["fetch_assignment", lab, "--course", "mlsec", f"--Exchange.root={exchange}"], home)
    fetched = home / lab / f"{lab}.ipynb"
    assert fetched.read_bytes() == (ROOT / "labs" / lab / f"{lab}.ipynb").read_bytes()
    fetched.write_text(fetched.read_text().replace("raise NotImplementedError()", "pass  # my answer", 1))
    run(["submit", lab, "--course", "mlsec", f"--Exchange.root={exchange}"], home)
    run(["collect", lab], course)
    collected = list((course / "grading" / "submitted").glob(f"*/{lab}/{lab}.ipynb"))
    assert len(collected) == 1 and "pass  # my answer" in collected[0].read_text()
