"""The student edition (`make student`): what a student downloads, without the answer key.

    .venv/bin/mlsec-student [--course DIR] [--out DIR] [--no-zip] [--no-book] [--unlock LAB ...]

labkit in this repository is whole: the book, the benchmarks and the autograder use it. The graded
parts of its source are marked the way nbgrader marks a solution in a notebook::

    def verify(mk, vk, model, *, threshold=...):
        \"\"\"...the contract...\"\"\"
        ### BEGIN SOLUTION lab2_watermarking
        ...the reference...
        ### END SOLUTION

The word after ``BEGIN SOLUTION`` names the lab (a folder of ``solutions/``) whose student writes
that function. The edition (``dist/student/`` and ``dist/mlsec-student.zip``) holds:

* ``labs/``: the released notebooks (``make release`` generated them from ``solutions/``);
* ``labkit/``: the library with every marked region replaced by
  ``raise NotImplementedError(...)`` naming the lab and the task;
* a student README, a Makefile (``make setup``, ``make lab``, ``make validate``), the requirements,
  a ``pyproject.toml`` that installs labkit only, and an ``nbgrader_config.py`` for Validate;
* ``book/``: the rendered book, when ``_build/html`` exists (``make book``).

Nothing of ``solutions/``, the hidden tests, the model answers, ``grading/`` or ``coursetools``.
Before it writes anything the builder checks the edition it assembled with :func:`find_leaks` (every
distinctive line of a marked region, a notebook solution, a hidden test or a model answer, looked
for in every file) and refuses to publish one that leaks.

``--unlock LAB`` ships LAB's references whole (for instance once its deadline has passed, so that a
later lab's students may use them); without it every marked region is stubbed.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import html
import io
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from .nbgrading import discover_labs, read_notebook

BEGIN = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION(?P<rest>.*)$")
END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*$")
_LAB = re.compile(r"^lab[0-9][0-9a-z]*_[a-z0-9_]+$")

# What the edition's requirements pin: the course's own pins for what a student runs (no book
# builder, no test runner, no grading database).
STUDENT_PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "matplotlib", "tqdm", "opacus",
                    "nbgrader", "jupyterlab", "notebook", "ipykernel")
# nbgrader's instructor tools, switched off in the edition's environment (nbgrader's installation
# docs: the lab plugins and the server extensions can be disabled one by one).
INSTRUCTOR_LAB_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                          "@jupyter/nbgrader:course-list")
INSTRUCTOR_SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",
                                "nbgrader.server_extensions.course_list")
MIN_LEAK_LINE = 30  # shorter lines (``return out``, ``else:``) say nothing about an answer


class EditionError(RuntimeError):
    """The sources are marked wrongly, or the edition would leak."""


@dataclasses.dataclass(frozen=True)
class Region:
    """One marked region of labkit's source."""

    path: str            # relative to the course root, e.g. "labkit/watermark.py"
    begin: int           # 1-based line of the BEGIN marker
    end: int             # 1-based line of the END marker
    lab: str             # the lab that grades it, e.g. "lab2_watermarking"
    function: str        # dotted name, e.g. "labkit.watermark.verify"
    task_function: str   # the lab's function whose task this is (the function itself, or the
                         # graded function a helper serves: "### BEGIN SOLUTION lab4b_lira fit_lira_gaussians")
    indent: str
    code: tuple[str, ...]  # the lines between the markers

    @property
    def name(self) -> str:
        return self.function.rsplit(".", 1)[1]


@dataclasses.dataclass(frozen=True)
class Task:
    """Where a student writes a marked function: the lab's title and the task's heading."""

    lab: str
    lab_title: str       # "Lab 2"
    heading: str         # "Task (e): Verify (15 points)"

    def message(self, function: str) -> str:
        return (f"{function} is graded in {self.lab_title} ({self.heading}): in the student edition "
                f"it is yours to write, in labs/{self.lab}/{self.lab}.ipynb")


# --------------------------------------------------------------------------- reading the marks
def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _enclosing_function(tree: ast.AST, line: int) -> str | None:
    """Dotted path (Class.method or function) of the innermost def around ``line``."""
    best: list[str] | None = None

    def walk(node, prefix):
        nonlocal best
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + [child.name]
                if child.lineno <= line <= child.end_lineno:
                    if not isinstance(child, ast.ClassDef):
                        best = name
                    walk(child, name)

    walk(tree, [])
    return ".".join(best) if best else None


def file_regions(path: Path, root: Path) -> list[Region]:
    """The marked regions of one source file; an :class:`EditionError` for a malformed mark."""
    rel = str(path.relative_to(root))
    text = path.read_text()
    lines = text.split("\n")
    tree = None
    out: list[Region] = []
    open_at: tuple[int, str, str] | None = None
    for no, line in enumerate(lines, start=1):
        m = BEGIN.match(line)
        if m:
            if open_at is not None:
                raise EditionError(f"{rel}:{no}: BEGIN SOLUTION inside the region opened at line {open_at[0]}")
            words = m.group("rest").split()
            lab = words[0] if words else ""
            if not _LAB.match(lab) or len(words) > 2:
                raise EditionError(f"{rel}:{no}: '### BEGIN SOLUTION' must name the lab that grades the "
                                   f"region, as in '### BEGIN SOLUTION lab2_watermarking' (and, for a helper, "
                                   f"the graded function it serves); got {m.group('rest').strip()!r}")
            open_at = (no, lab, m.group("indent"), words[1] if len(words) == 2 else None)
        elif END.match(line):
            if open_at is None:
                raise EditionError(f"{rel}:{no}: END SOLUTION without a BEGIN SOLUTION")
            begin, lab, indent, serves = open_at
            tree = tree or ast.parse(text, filename=rel)
            func = _enclosing_function(tree, begin)
            if func is None:
                raise EditionError(f"{rel}:{begin}: a marked region must lie inside a function body")
            code = tuple(lines[begin:no - 1])
            if not any(c.strip() for c in code):
                raise EditionError(f"{rel}:{begin}: the marked region is empty")
            out.append(Region(rel, begin, no, lab, f"{_module_name(path, root)}.{func}",
                              serves or func.rsplit(".", 1)[-1], indent, code))
            open_at = None
    if open_at is not None:
        raise EditionError(f"{rel}:{open_at[0]}: BEGIN SOLUTION is never closed by END SOLUTION")
    return out


def regions(root: Path) -> list[Region]:
    """Every marked region of labkit, in file order."""
    root = Path(root)
    found: list[Region] = []
    for path in sorted((root / "labkit").rglob("*.py")):
        found += file_regions(path, root)
    return found


def _cells(notebook: Path) -> list:
    return read_notebook(notebook).cells


def task_of(root: Path, lab: str, name: str) -> Task:
    """The task of ``lab`` whose solution cell defines ``name`` (the nearest ``## Task`` heading above it)."""
    nb = Path(root) / "solutions" / lab / f"{lab}.ipynb"
    if not nb.is_file():
        raise EditionError(f"a region is marked for {lab!r}, but there is no solutions/{lab}/{lab}.ipynb")
    cells = _cells(nb)
    title = re.match(r"#\s*(Lab \w+)", cells[0].source)
    heading = None
    for cell in cells:
        src = cell.source
        if cell["cell_type"] == "markdown":
            for line in src.splitlines():
                if re.match(r"^##\s+Task\b", line):
                    heading = line.lstrip("#").strip()
        elif cell.get("metadata", {}).get("nbgrader", {}).get("solution") and re.search(rf"^def {re.escape(name)}\(", src, re.M):
            if heading is None:
                raise EditionError(f"solutions/{lab}: no '## Task' heading above the cell that defines {name}")
            return Task(lab, title.group(1) if title else lab, heading)
    raise EditionError(f"labkit marks {name} as graded in {lab}, but no solution cell of "
                       f"solutions/{lab}/{lab}.ipynb defines it")


# --------------------------------------------------------------------------- stubbing
def stubbed(text: str, file_regs: list[Region], tasks: dict[str, Task]) -> str:
    """``text`` with each region's code replaced by a raise naming its lab and task."""
    lines = text.split("\n")
    for r in sorted(file_regs, key=lambda r: r.begin, reverse=True):
        msg = tasks[r.function].message(r.function)
        lines[r.begin - 1:r.end] = [f"{r.indent}raise NotImplementedError({msg!r})"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- leaks
def _blocks(text: str, begin: str, end: str) -> list[str]:
    return re.findall(rf"{re.escape(begin)}[^\n]*\n(.*?){re.escape(end)}", text, flags=re.S)


def secret_lines(root: Path) -> dict[str, str]:
    """{distinctive line: where it comes from} for everything a student must not receive: labkit's
    marked regions, the solution and hidden-test blocks of every lab, and its model answers."""
    root = Path(root)
    found: dict[str, str] = {}

    def add(text: str, origin: str) -> None:
        for line in text.splitlines():
            line = line.strip()
            # an import says nothing about an answer (and chapters import the same names)
            if len(line) >= MIN_LEAK_LINE and not line.startswith(("#", "import ", "from ")):
                found.setdefault(line, origin)

    for r in regions(root):
        add("\n".join(r.code), f"{r.path} ({r.function})")
    for lab in discover_labs(root):
        for cell in _cells(root / "solutions" / lab / f"{lab}.ipynb"):
            src, meta = cell.source, cell.get("metadata", {}).get("nbgrader", {})
            gid = meta.get("grade_id", "?")
            for block in _blocks(src, "### BEGIN SOLUTION", "### END SOLUTION"):
                add(block, f"solutions/{lab} ({gid}, solution)")
            for block in _blocks(src, "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"):
                add(block, f"solutions/{lab} ({gid}, hidden test)")
            if cell["cell_type"] == "markdown" and meta.get("solution"):
                add(src, f"solutions/{lab} ({gid}, model answer)")
        hidden = root / "solutions" / lab / "hidden_checks.py"
        if hidden.is_file():
            from .checks import secret_lines as check_lines

            add("\n".join(sorted(check_lines(hidden))), f"solutions/{lab}/hidden_checks.py")
    return found


def _texts(path: Path) -> list[tuple[str, str]]:
    """(name, text) of a file as a reader sees it: HTML without tags, each member of a zip."""
    if path.suffix == ".zip":
        out = []
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir():
                    out += [(f"{path.name}:{n}", t) for n, t in _member_texts(info.filename, z.read(info))]
        return out
    return _member_texts(path.name, path.read_bytes())


def _member_texts(name: str, data: bytes) -> list[tuple[str, str]]:
    text = data.decode("utf-8", errors="ignore")
    if name.endswith((".html", ".htm")):  # highlighted code is split into <span>s
        text = text + "\n" + html.unescape(re.sub(r"<[^>]+>", "", text))
    if name.endswith((".ipynb", ".json", ".js")):
        text = text + "\n" + text.replace('\\"', '"').replace("\\n", "\n")
    return [(name, text)]


def find_leaks(edition: Path, secrets: dict[str, str], *, public: str = "") -> list[str]:
    """One line per secret found in a file of ``edition`` (zips opened); ``[]`` when clean.

    ``public`` is text that may legitimately hold a line that is also secret (the released
    notebooks and the stubbed labkit): such a line is not an answer, whoever wrote it first.
    """
    edition = Path(edition)
    wanted = {line: origin for line, origin in secrets.items() if line not in public}
    leaks = []
    for path in sorted(p for p in edition.rglob("*") if p.is_file()):
        if "mathjax" in path.parts or ".venv" in path.parts:  # third-party code, not ours
            continue
        for name, text in _texts(path):
            if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text:
                leaks.append(f"{path.relative_to(edition)} [{name}]: holds an nbgrader solution or hidden-test marker")
            for line, origin in wanted.items():
                if line in text:
                    leaks.append(f"{path.relative_to(edition)} [{name}]: {line!r} (from {origin})")
    return leaks


def public_text(root: Path, unlock: tuple[str, ...] = ()) -> str:
    """What a student may see anyway, computed from the course's sources (never from an edition):
    labkit with its marked regions stubbed, and the released notebooks. A secret line that also
    stands there (a shared input check, say) gives nothing away."""
    root = Path(root)
    regs = regions(root)
    tasks = {r.function: task_of(root, r.lab, r.task_function) for r in regs}
    parts = []
    for path in sorted((root / "labkit").rglob("*.py")):
        mine = [r for r in regs if r.path == str(path.relative_to(root)) and r.lab not in unlock]
        parts.append(stubbed(path.read_text(), mine, tasks) if mine else path.read_text())
    for nb in sorted((root / "labs").rglob("*.ipynb")):
        parts += [t for _, t in _texts(nb)]
    return "\n".join(parts)


def check_edition(edition: Path, root: Path, *, unlock: tuple[str, ...] = ()) -> list[str]:
    """The leaks of an edition folder (zips inside it opened): every secret line of the course
    (:func:`secret_lines`, less those of unlocked labs) that is not public anyway."""
    regs = regions(root)
    secrets = {ln: o for ln, o in secret_lines(root).items()
               if not any(o.startswith(f"solutions/{lab} ") for lab in unlock)
               and not any(o.startswith(f"{r.path} ({r.function})") and r.lab in unlock for r in regs)}
    return find_leaks(edition, secrets, public=public_text(root, unlock))


# --------------------------------------------------------------------------- building
def _requirements(root: Path) -> str:
    pins = {}
    for line in (root / "requirements.txt").read_text().splitlines():
        spec = line.split("#", 1)[0].strip()
        name = re.split(r"[<>=!~\[ ]", spec, maxsplit=1)[0].lower()
        if name in STUDENT_PACKAGES:
            pins[name] = spec
    missing = [p for p in STUDENT_PACKAGES if p not in pins]
    if missing:
        raise EditionError(f"requirements.txt does not list {missing}: the edition's requirements copy its pins")
    body = "\n".join(pins[p] for p in STUDENT_PACKAGES)
    return ("# The student edition's software (Python 3.11): `make setup` installs it into .venv.\n"
            f"{body}\n-e .\n")


PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "labkit"
version = "{version}"
description = "The course's library, student edition: graded functions are left to you"
requires-python = ">=3.10"
dependencies = {dependencies}

[tool.setuptools.packages.find]
include = ["labkit*"]
"""

NBGRADER_CONFIG = """\
\"\"\"nbgrader settings for students (the Validate button and `make validate`).\"\"\"
c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "mlsec"
# Some lab cells train models for a minute or more on a laptop CPU: allow each cell 300 s
# (nbgrader's default is 30 s), as the course's autograder does.
c.Execute.timeout = 300
"""

MAKEFILE = """\
# The student edition. `make setup` once, then `make lab`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LABS   := $(notdir $(wildcard labs/lab*))

.PHONY: help setup lab validate

help:
\t@echo "make setup            create .venv and install labkit, JupyterLab and nbgrader (a few minutes)"
\t@echo "make lab              start JupyterLab here"
\t@echo "make validate LAB=... run nbgrader's Validate on labs/LAB/LAB.ipynb (LAB: $(LABS))"

$(BIN)/python: requirements.txt pyproject.toml
\ttest -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
\t$(BIN)/python -m pip install --quiet --upgrade pip
\t$(BIN)/python -m pip install --quiet -r requirements.txt
\t# a student sees nbgrader's student tools (Validate, Assignments), not the instructor's
{disable}
\ttouch $(BIN)/python

setup: $(BIN)/python

lab: setup
\t$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root,)

validate: setup
\t@test -n "$(LAB)" || (echo "name a lab: make validate LAB=<one of: $(LABS)>"; exit 2)
\t$(BIN)/nbgrader validate labs/$(LAB)/$(LAB).ipynb
"""


def _makefile() -> str:
    cmds = [f"\t$(BIN)/jupyter labextension disable --level=sys_prefix {p}" for p in INSTRUCTOR_LAB_PLUGINS]
    # locked: JupyterLab's plugin manager cannot switch them back on
    cmds += [f"\t$(BIN)/jupyter labextension lock --level=sys_prefix {p}" for p in INSTRUCTOR_LAB_PLUGINS]
    cmds += [f"\t$(BIN)/jupyter server extension disable --sys-prefix {e}" for e in INSTRUCTOR_SERVER_EXTENSIONS]
    return MAKEFILE.format(disable="\n".join(cmds))


def _readme(root: Path, lab_names: list[str], tasks: dict[str, Task], unlocked: set[str], book: bool,
            written: set[str]) -> str:
    rows = []
    for lab in lab_names:
        title = re.match(r"#\s*(.+)", _cells(root / "labs" / lab / f"{lab}.ipynb")[0].source)
        # the functions a task asks for (``written``); a helper that serves one of them (marked with
        # that function's name, as lira._masked_mean_std) is stubbed too, but no task names it
        funcs = sorted(f for f, t in tasks.items() if t.lab == lab and f in written)
        stubbed = "shipped whole (unlocked by your instructor)" if lab in unlocked else ", ".join(f"`{f}`" for f in funcs) or "none"
        rows.append(f"| `labs/{lab}/{lab}.ipynb` | {title.group(1) if title else lab} | {stubbed} |")
    book_line = ("The rendered book is in `book/`: open `book/index.html` in a browser (it works offline).\n"
                 if book else "")
    return f"""# Security and Privacy of Machine Learning: student edition

This folder is everything you need for the labs: the lab notebooks, `labkit` (the course's small
PyTorch library) and a one-command set-up. {book_line}
## Set up (once)

You need Python 3.11 and GNU make.

```bash
make setup   # creates .venv and installs labkit, PyTorch, JupyterLab and nbgrader (a few minutes)
make lab     # opens JupyterLab in this folder
```

Without make: `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt`, then
`.venv/bin/jupyter lab`. A GPU is used when PyTorch finds one; every lab also runs on a laptop CPU.

## Do a lab

1. Open `labs/<lab>/<lab>.ipynb` in JupyterLab and read it from the top.
2. Replace each `raise NotImplementedError()` below `# YOUR CODE HERE` with your code, and write
   your answers in the cells that say `YOUR ANSWER HERE`.
3. Run the cell after each task: its visible tests tell you whether the basics work. The grader
   runs more tests (hidden ones) on the same functions, so a passing visible test is a good sign,
   not a grade.
4. Press **Validate** in the notebook's toolbar (or run `make validate LAB=<lab>`): it runs the
   whole notebook from a fresh kernel, as the grader will, and lists what still fails.

## Hand in

Your instructor tells you which of the two ways your course uses:

* **By upload** (this edition was a download): save the notebook and upload the one file
  `labs/<lab>/<lab>.ipynb` to your course's learning platform. Do not rename it.
* **On the course's JupyterHub**: open the **Assignments** tab in JupyterLab, **Fetch** the lab,
  work in the fetched copy, press **Validate**, then **Submit**. You may submit again until the
  deadline; the last submission counts.

The grader runs your notebook from top to bottom in a fresh kernel, each cell for at most 300 s, with
no network and no access to files outside the notebook's folder. Restart and run all before you
hand in.

## labkit in this edition

`labkit` is the library the course's reference solutions use, with the functions you write in the
labs left out: calling one raises `NotImplementedError` naming the lab and task where you write it.
No lab needs a function that another lab asks you to write.

| notebook | lab | labkit functions that are yours to write |
|---|---|---|
{chr(10).join(rows)}
"""


def _write_labkit(root: Path, dest: Path, stub_regs: list[Region], tasks: dict[str, Task]) -> None:
    """labkit's sources under ``dest/labkit``, each region of ``stub_regs`` stubbed, EDITION "student"."""
    for path in sorted((root / "labkit").rglob("*.py")):
        rel = path.relative_to(root)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        mine = [r for r in stub_regs if r.path == str(rel)]
        text = path.read_text()
        if mine:
            text = stubbed(text, mine, tasks)
        for marker in re.findall(r"^[ \t]*### (?:BEGIN|END) SOLUTION.*$", text, flags=re.M):
            text = text.replace(marker + "\n", "")  # unlocked labs: drop the marks, keep the code
        if str(rel) == "labkit/__init__.py":
            text, n = re.subn(r'^EDITION = "full"$', 'EDITION = "student"', text, flags=re.M)
            if n != 1:
                raise EditionError('labkit/__init__.py must set EDITION = "full" (the edition sets "student")')
        (dest / rel).write_text(text)


def write_stubbed_labkit(root: Path, dest: Path) -> Path:
    """The student edition's labkit (every graded region stubbed) under ``dest/labkit``; returns that
    folder. The grader shows it to the kernel of a lab whose hidden checks run outside the kernel."""
    root, dest = Path(root), Path(dest)
    regs = regions(root)
    tasks = {r.function: task_of(root, r.lab, r.task_function) for r in regs}
    _write_labkit(root, dest, regs, tasks)
    return dest / "labkit"


def build(root: Path, out: Path, *, make_zip: bool = True, book: bool = True,
          unlock: tuple[str, ...] = ()) -> Path:
    """Assemble the student edition of the course at ``root`` into ``out`` (replaced); return it."""
    root, out = Path(root).resolve(), Path(out).resolve()
    lab_names = discover_labs(root)
    unknown = sorted(set(unlock) - set(lab_names))
    if unknown:
        raise EditionError(f"--unlock names no lab: {unknown}; the labs are {lab_names}")
    missing = [lab for lab in lab_names if not (root / "labs" / lab / f"{lab}.ipynb").is_file()]
    if missing:
        raise EditionError(f"labs/ lacks the released notebook of {missing}: run `make release` first")
    regs = regions(root)
    tasks = {r.function: task_of(root, r.lab, r.task_function) for r in regs}
    stub_regs = [r for r in regs if r.lab not in unlock]

    with tempfile.TemporaryDirectory(prefix="mlsec-student-") as tmp:
        ed = Path(tmp) / "student"
        ed.mkdir()
        _write_labkit(root, ed, stub_regs, tasks)
        # the released notebooks (and any data file beside them)
        shutil.copytree(root / "labs", ed / "labs",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", ".*"))
        version = re.search(r'^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text(), re.M)
        deps = re.search(r"^dependencies\s*=\s*(\[[^\]]*\])", (root / "pyproject.toml").read_text(), re.M)
        (ed / "pyproject.toml").write_text(PYPROJECT.format(version=version.group(1) if version else "0",
                                                            dependencies=deps.group(1) if deps else "[]"))
        (ed / "requirements.txt").write_text(_requirements(root))
        (ed / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
        (ed / "Makefile").write_text(_makefile())
        html_book = root / "_build" / "html"
        with_book = book and (html_book / "index.html").is_file()
        if with_book:
            shutil.copytree(html_book, ed / "book", ignore=shutil.ignore_patterns(".buildinfo", "_sources"))
        written = {r.function for r in regs if r.function.rsplit(".", 1)[1] == r.task_function}
        (ed / "README.md").write_text(_readme(root, lab_names, tasks, set(unlock), with_book, written))

        # refuse to publish a leak
        leaks = check_edition(ed, root, unlock=unlock)
        if leaks:
            raise EditionError("the student edition would leak answers; nothing was written:\n  "
                               + "\n  ".join(leaks[:20]))

        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ed, out)
    if make_zip:
        archive = out.parent / "mlsec-student.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(out.rglob("*")):
                if p.is_file():
                    z.write(p, Path("mlsec-student") / p.relative_to(out))
    return out


def _size(path: Path) -> str:
    n = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return f"{n / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mlsec-student", description=__doc__.split("\n\n")[0])
    ap.add_argument("--course", type=Path, default=Path.cwd(), help="the course root (default: here)")
    ap.add_argument("--out", type=Path, default=None, help="the edition's folder (default: COURSE/dist/student)")
    ap.add_argument("--no-zip", action="store_true", help="do not write dist/mlsec-student.zip")
    ap.add_argument("--no-book", action="store_true", help="leave the rendered book out even if it was built")
    ap.add_argument("--unlock", nargs="*", default=[], metavar="LAB",
                    help="ship these labs' references whole (e.g. after their deadline)")
    args = ap.parse_args(argv)
    out = args.out or args.course / "dist" / "student"
    try:
        ed = build(args.course, out, make_zip=not args.no_zip, book=not args.no_book, unlock=tuple(args.unlock))
    except EditionError as e:
        print(f"mlsec-student: {e}", file=sys.stderr)
        return 1
    n_regions = len(regions(args.course))
    print(f"student edition: {ed} ({_size(ed)}), {n_regions} labkit regions stubbed"
          + (f" except those of {', '.join(args.unlock)}" if args.unlock else ""))
    if not args.no_zip:
        print(f"zip: {ed.parent / 'mlsec-student.zip'} ({_size(ed.parent / 'mlsec-student.zip')})")
    if not (Path(ed) / "book").is_dir():
        print("the rendered book is not included (run `make book` first to include it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
