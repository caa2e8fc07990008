"""JupyterLab as people use it, in a real browser (headless Chromium driven by Playwright).

* A student: JupyterLab started from the installed student edition, Lab 1 opened, a solution typed
  into its first stub, Validate pressed and its dialog read; the instructor's tools are absent.
* An instructor: JupyterLab started in (a copy of) the course, where formgrader, Create Assignment
  and a working exchange (Release / Collect) are present.

Chromium comes from Debian (`apt-get install chromium`; .ci/run installs it), the Python driver from
PyPI (`playwright`); Playwright's own browser download is not used.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from coursetools import nbgrading

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements.txt)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium"),
]
TOKEN = "mlsec-browser-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on loopback, with its own home and config folders."""

    def __init__(self, jupyter: Path, root: Path, home: Path):
        self.port = _free_port()
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "VIRTUAL_ENV")}
        env.update(HOME=str(home), JUPYTER_CONFIG_DIR=str(home / ".jupyter"), LABKIT_PROGRESS="0")
        self.log = home / "jupyter.log"
        self.proc = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={root}", "--allow-root"],
            cwd=root, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url("/api/status"), timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"JupyterLab did not start:\n{self.log.read_text()[-3000:]}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}?token={TOKEN}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _open_notebook(browser, server: JupyterLab, path: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(server.url(f"/lab/tree/{path}"))
    page.wait_for_selector(".jp-Notebook .jp-CodeCell .cm-content")
    page.wait_for_selector(".jp-NotebookPanel-toolbar [title='Validate Assignment']")
    return page


def _nbgrader_menu(page) -> list[str]:
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    items = [m.inner_text() for m in page.query_selector_all(".lm-Menu-itemLabel") if m.is_visible()]
    page.keyboard.press("Escape")
    return items


def _sidebar_tabs(page) -> list[str]:
    return [t.get_attribute("title") or t.inner_text() for t in page.query_selector_all(".jp-SideBar .lm-TabBar-tab")]


def _first_solution(lab: str) -> str:
    nb = nbgrading.read_notebook(ROOT / "solutions" / lab / f"{lab}.ipynb")
    return nbgrading.strip_solution_markers(nbgrading.solution_code_cells(nb)[0].source)


def _test_docstrings(lab: str) -> list[str]:
    """The first line of each visible test cell of the released lab, in order."""
    nb = json.loads((ROOT / "labs" / lab / f"{lab}.ipynb").read_text())
    return ["".join(c["source"]).splitlines()[0] for c in nb["cells"]
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")]


def test_a_student_types_a_solution_and_validates(installed_edition, browser, tmp_path):
    lab = "lab1_extraction"
    work = tmp_path / "student"  # the student's folder: the edition without its venv, which stays where it was built
    shutil.copytree(installed_edition, work, ignore=shutil.ignore_patterns(".venv"))
    server = JupyterLab(installed_edition / ".venv" / "bin" / "jupyter", work, tmp_path / "home")
    try:
        page = _open_notebook(browser, server, f"labs/{lab}/{lab}.ipynb")
        menu = _nbgrader_menu(page)
        assert "Assignment List" in menu, menu
        assert not {"Formgrader", "Create assignment", "Course List"} & set(menu), menu
        assert not any("Create Assignment" in t for t in _sidebar_tabs(page)), _sidebar_tabs(page)
        with urllib.request.urlopen(server.url("/api/status")):
            pass
        try:
            urllib.request.urlopen(server.url("/formgrader"))
            raise AssertionError("the student's server answers /formgrader")
        except urllib.error.HTTPError as e:
            assert e.code == 404

        # type the model solution into the first stub, save, press Validate
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        stub = next(i for i in range(cells.count())
                    if "raise NotImplementedError()" in cells.nth(i).locator(".cm-content").inner_text())
        editor = cells.nth(stub).locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(_first_solution(lab))
        page.keyboard.press("Control+s")
        def solved_on_disk() -> bool:
            saved = json.loads((work / "labs" / lab / f"{lab}.ipynb").read_text())
            return any("def extraction_scores" in "".join(c["source"]) and "raise NotImplementedError()" not in "".join(c["source"])
                       for c in saved["cells"])

        deadline = time.time() + 30
        while not solved_on_disk() and time.time() < deadline:
            time.sleep(0.5)
        assert solved_on_disk(), "the typed solution was not saved"

        page.locator(".jp-NotebookPanel-toolbar [title='Validate Assignment']").first.click()
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for()
        deadline = time.time() + 400
        while time.time() < deadline and ("failed" not in dialog.inner_text() and "passed" not in dialog.inner_text()):
            time.sleep(1)
        text = dialog.inner_text()
        assert "Validation Results" in text, text[:2000]
        tests = _test_docstrings(lab)
        assert tests[0] not in text, "the test of the solved task still fails"
        assert tests[1] in text, "the next task's test (still a stub) must be reported as failing"
        assert "NotImplementedError" in text
        page.close()
    finally:
        server.stop()


def test_the_instructor_has_formgrader_and_a_working_exchange(browser, tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    for name in ("solutions", "labs"):
        shutil.copytree(ROOT / name, course / name)
    shutil.copy(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    server = JupyterLab(Path(sys.executable).with_name("jupyter"), course, tmp_path / "home")
    try:
        page = _open_notebook(browser, server, "labs/lab1_extraction/lab1_extraction.ipynb")
        menu = _nbgrader_menu(page)
        assert {"Formgrader", "Create assignment", "Assignment List"} <= set(menu), menu
        assert any("Create Assignment" in t for t in _sidebar_tabs(page)), _sidebar_tabs(page)
        page.goto(server.url("/formgrader"))
        page.wait_for_selector("text=Manage Assignments")
        body = page.locator("body").inner_text()
        assert "Release" in body and "Collect" in body
        assert page.locator("#warning-exchange").count() == 0, "formgrader says the exchange is missing"
        assert "could not be created" not in body
        assert (course / "grading" / "exchange").is_dir()
        page.close()
    finally:
        server.stop()
