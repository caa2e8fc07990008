"""The rendered book: builds clean with warnings as errors, and publishes no solution code."""
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir() and p.name.startswith("lab"))


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            files.append(e["file"])
            walk(e.get("sections"))

    walk(toc["chapters"])
    return files


def test_every_lab_is_in_the_toc_as_its_student_version():
    files = _toc_files()
    for lab in LABS:
        assert f"labs/{lab}/{lab}" in files, f"{lab} is missing from _toc.yml"
    assert not any(f.startswith("solutions") for f in files)


def _solution_lines(lab: str) -> set[str]:
    """Distinctive lines of a lab's solution blocks: not in its student version, and not in labkit's
    own (public) source, where generic lines such as ``gen = make_generator(generator)`` also stand."""
    src = json.loads((ROOT / "solutions" / lab / f"{lab}.ipynb").read_text())
    released = (ROOT / "labs" / lab / f"{lab}.ipynb").read_text()
    public = "\n".join(p.read_text() for p in (ROOT / "labkit").rglob("*.py"))
    lines = set()
    for cell in src["cells"]:
        text = "".join(cell["source"])
        for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", text, flags=re.S):
            for line in block.splitlines():
                line = line.strip()
                if len(line) >= 30 and not line.startswith("#") and json.dumps(line)[1:-1] not in released and line not in public:
                    lines.add(line)
    return lines


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    out = tmp_path_factory.mktemp("book")
    env = dict(os.environ, LABKIT_PROGRESS="0")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run(
        [str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, env=env, timeout=3600,
    )
    assert proc.returncode == 0, f"book build failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return out / "_build" / "html"


@pytest.mark.slow
def test_book_builds_with_every_chapter_and_lab(built_book):
    assert (built_book / "index.html").exists()
    for f in _toc_files():
        assert (built_book / f"{f}.html").exists(), f"{f}.html was not rendered"
    # chapters are executed: their figures are embedded images
    for chapter in ("book/01_recap", "book/02_watermarking", "book/03_privacy_risks", "book/04_membership"):
        html = (built_book / f"{chapter}.html").read_text()
        assert "<img" in html, f"{chapter} has no executed figure"


@pytest.mark.slow
def test_math_renders_offline_from_the_book_itself(built_book):
    """Every page with formulas loads MathJax from _static, which holds the library and its fonts."""
    page = (built_book / "book" / "04_membership.html").read_text()
    assert 'src="../_static/mathjax/MathJax.js?config=' in page
    assert "cdn.jsdelivr.net" not in page and "window.MathJax" not in page  # no CDN, no MathJax 3 config
    assert "MathJax.Hub.Config" in page and r"\(" in page  # MathJax 2 configured, inline math present
    static = built_book / "_static" / "mathjax"
    config = re.search(r'MathJax\.js\?config=([\w-]+)', page).group(1)
    assert (static / "MathJax.js").is_file() and (static / "config" / f"{config}.js").is_file()
    assert any((static / "fonts" / "HTML-CSS" / "STIX-Web" / "woff").glob("*.woff"))


@pytest.mark.slow
def test_book_contains_no_solution_code(built_book):
    """The student edition's leak check over the rendered book: no line of a labkit marked region,
    a notebook solution, a hidden test or a model answer (the edition ships this book)."""
    from coursetools import student

    leaks = student.check_edition(built_book, ROOT)
    assert not leaks, "the book publishes answers:\n" + "\n".join(leaks[:10])
    for lab in LABS:  # the lab pages are the released notebooks: each lab's solutions are looked for
        assert _solution_lines(lab), f"{lab}: found no solution lines to look for"
