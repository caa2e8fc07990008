"""No script from a hand-in runs for the instructor (coursetools/sanitize.py, coursetools/formgrader_guard.py).

A throwaway copy of the fixture course (tests/fixtures/course, lab "demo") receives a hand-in that
solves both tasks and carries every way we know of to put script into the instructor's browser:
raw HTML and ``<script>`` in a markdown cell (``<img onerror>``, ``<details ontoggle>``, an
``<iframe srcdoc>``, a ``javascript:`` link, mutation-XSS markup), the same in the written answer
the instructor must open, a markdown attachment (an SVG with script, an HTML page), a raw cell, and
outputs: ``text/html``, ``application/javascript``, ``text/javascript``, an SVG with script,
``text/markdown``, an "isolated" HTML output, an image whose width metadata is an attribute
injection. Each payload, if it ran, would set a DOM marker
(``document.title = 'PWNED'``, ``window.__pwned``) and create ``pwned_<payload>.txt`` in the course
through the server's contents API (a PUT with the xsrf cookie), as the attack in issue 18 did.

It is graded with the real ``mlsec-grade`` (sandbox on) beside an honest hand-in. Then JupyterLab
is started in the course as the instructor starts it, and headless Chromium opens formgrader's
manual-grading view of the hand-in (``/formgrader/submissions/<id>/``) and its feedback (through
``/files/`` and as a local file): no marker in any frame, no write request to the contents API, no
file created, the honest content (the written answer's text) shown, formgrader's own scripts
working under the page's Content-Security-Policy. A second server, with the sanitizer switched off
and an unsanitized notebook in place, shows that the policy alone stops the same payloads. A
positive control runs one payload by hand and sees its file appear, so the checks can see a hit.
"""
import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coursetools import nbgrading, sanitize

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"
ATTACKER, RAW, HONEST = "mallory_xss", "mallory_raw", "alice"
ANSWER = "One extreme value moves the sum, and so the mean, without bound."
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

pytestmark = pytest.mark.slow


def js(tag: str) -> str:
    """A payload: the DOM markers and a PUT of pwned_<tag>.txt to the contents API. No space, no
    double quote: it fits a double-quoted or an unquoted attribute."""
    return ("document.title='PWNED';window.__pwned=(window.__pwned||'')+'%s,';"
            "window.__x=document.cookie.match(/_xsrf=([^;]+)/);"
            "fetch('/api/contents/pwned_%s.txt',{method:'PUT',credentials:'include',headers:{'Content-Type':"
            "'application/json','X-XSRFToken':window.__x?decodeURIComponent(window.__x[1]):''},"
            "body:JSON.stringify({type:'file',format:'text',content:'%s'})});" % (tag, tag, tag))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


EVIL_SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" onload="%s"><script>%s</script>'
            '<circle cx="10" cy="10" r="5"/></svg>' % (js("att_svg_onload"), js("att_svg_script")))

MARKDOWN_PAYLOADS = "\n\n".join([
    "## Notes of the hand-in",
    "Honest notes: the markdown around the payloads stays readable.",
    "<script>%s</script>" % js("md_script"),
    'An image: <img src="x" onerror="%s">' % js("md_img"),
    '<details open ontoggle="%s"><summary>details</summary>body</details>' % js("md_details"),
    "<svg><script>%s</script></svg>" % js("md_svg"),
    '<iframe srcdoc="&lt;script&gt;%s&lt;/script&gt;"></iframe>' % js("md_iframe").replace("'", "&#39;"),
    "<a href=\"javascript:%s\">a javascript link</a> and [another](javascript:alert(1))" % js("md_link"),
    '<noscript><p title="</noscript><img src=x onerror=%s>"></noscript>' % js("md_noscript"),
    '<math><mtext><table><mglyph><style><img src=x onerror="%s"></style></mglyph></table></mtext></math>'
    % js("md_mxss"),
])
ATTACHMENT_MARKDOWN = "An attached figure ![figure](attachment:evil.svg) and ![page](attachment:page.html)"
OUTPUT_CELL = r'''
from IPython.display import display, HTML, Javascript, SVG, Markdown
PAYLOAD = %r
def js(tag):
    return PAYLOAD.replace('TAG', tag)
display(HTML('<table class="dataframe"><tr><td>honest-html-output</td></tr></table>'
             '<img src="x" onerror="%%s"><script>%%s</script>' %% (js('out_html_img'), js('out_html_script'))))
display(Javascript(js('out_js')))
display({'text/javascript': js('out_textjs'), 'text/plain': 'text/javascript output'}, raw=True)
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20" onload="%%s"><script>%%s</script>'
            '<circle cx="10" cy="10" r="5"/></svg>' %% (js('out_svg_onload'), js('out_svg_script'))))
display(Markdown('markdown output <img src="x" onerror="%%s">' %% js('out_md')))
display({'text/html': '<script>%%s</script>' %% js('out_isolated')}, raw=True, metadata={'text/html': {'isolated': True}})
display({'image/png': 'AAAA'}, raw=True, metadata={'image/png': {'width': '1 onerror=' + js('out_png_width')}})
print('honest-stream-output')
''' % js("TAG")
def payload_notebook():
    """The fixture's solution (both tasks right) with every payload added by the student."""
    import nbformat

    nb = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    md = nbformat.v4.new_markdown_cell(MARKDOWN_PAYLOADS)
    att = nbformat.v4.new_markdown_cell(ATTACHMENT_MARKDOWN)
    att["attachments"] = {"evil.svg": {"image/svg+xml": _b64(EVIL_SVG)},
                          "page.html": {"text/html": _b64("<script>%s</script>" % js("att_html"))}}
    raw = nbformat.v4.new_raw_cell("<script>%s</script><img src=x onerror=\"%s\">" % (js("raw_script"), js("raw_img")),
                                   metadata={"raw_mimetype": "text/html", "format": "text/html"})
    out = nbformat.v4.new_code_cell(OUTPUT_CELL)
    nb.cells[1:1] = [md, att, raw, out]
    answer = nbgrading.cell_by_id(nb, "answer_outliers")
    answer.source = (ANSWER + ' <img src="x" onerror="%s">\n\n<script>%s</script>\n\n'
                     '<a href="javascript:%s">see also</a>' % (js("answer_img"), js("answer_script"), js("answer_link")))
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                         "version_minor": 0}}
    return nb


def raw_outputs():
    """What an unsanitized grading would have stored for the output cell (for the CSP-only check)."""
    return [
        {"output_type": "display_data", "metadata": {}, "data": {
            "text/html": '<img src="x" onerror="%s"><script>%s</script>' % (js("raw_out_img"), js("raw_out_script"))}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": js("raw_out_js")}},
        {"output_type": "display_data", "metadata": {"image/png": {"width": "1 onerror=" + js("raw_out_png")}},
         "data": {"image/png": "AAAA"}},
        {"output_type": "display_data", "metadata": {}, "data": {
            "text/markdown": '<img src="x" onerror="%s">' % js("raw_out_md")}},
        {"output_type": "display_data", "metadata": {"text/html": {"isolated": True}},
         "data": {"text/html": "<script>%s</script>" % js("raw_out_isolated")}},
    ]


# ------------------------------------------------------------------------------- graded course
@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = nbgrading.make_course(tmp_path_factory.mktemp("xss") / "course", [LAB], source=FIXTURE)
    solution = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    nbgrading.submit(course, HONEST, LAB, solution)
    nbgrading.submit(course, ATTACKER, LAB, payload_notebook())
    nbgrading.submit(course, RAW, LAB, payload_notebook())
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--dashboard", ":0", "--no-progress"],
                          capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return course


def _autograded(course: Path, student: str):
    return nbgrading.read_notebook(course / "grading" / "autograded" / student / LAB / f"{LAB}.ipynb")


def _feedback(course: Path, student: str) -> Path:
    return course / "grading" / "feedback" / student / LAB / f"{LAB}.html"


def _pwned_files(course: Path) -> list[str]:
    return sorted(str(p.relative_to(course)) for p in course.rglob("pwned_*"))


class _Active(HTMLParser):
    """Everything in an HTML page that can run script."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[tuple[dict, str]] = []
        self.handlers: list[str] = []
        self.urls: list[str] = []
        self.frames: list[str] = []
        self._script = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [f"{tag} {k}={v}" for k, v in attrs.items() if k.startswith("on")]
        self.urls += [f"{tag} {k}={v}" for k, v in attrs.items() if k in ("href", "src", "action", "formaction", "data")
                      and sanitize._URL_JUNK.sub("", v or "").lower().startswith(("javascript:", "vbscript:", "data:text"))]
        if tag in ("iframe", "frame", "object", "embed", "base") or (tag == "meta" and "http-equiv" in attrs):
            self.frames.append(tag)
        if tag == "script":
            self._script = (attrs, [])

    def handle_data(self, data):
        if self._script is not None:
            self._script[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script[0], "".join(self._script[1])))
            self._script = None


def active_content(page: str) -> _Active:
    parser = _Active()
    parser.feed(page)
    parser.close()
    return parser


def test_the_hand_in_keeps_its_scores_and_the_grades_are_unchanged(graded):
    from nbgrader.api import Gradebook

    with Gradebook(nbgrading.gradebook_url(graded)) as gb:
        scores = {s: gb.find_submission(LAB, s).code_score for s in (HONEST, ATTACKER, RAW)}
        answer = gb.find_grade("answer_outliers", LAB, LAB, ATTACKER)
        honest_answer = gb.find_grade("answer_outliers", LAB, LAB, HONEST)
    assert scores == {HONEST: 20, ATTACKER: 20, RAW: 20}, scores
    assert answer.needs_manual_grade and answer.auto_score is None  # the written answer waits for the instructor
    assert honest_answer.needs_manual_grade


def test_the_autograded_notebook_and_the_feedback_hold_no_script(graded):
    """The cheap check (no browser): what formgrader and the feedback render from holds nothing active."""
    nb = _autograded(graded, ATTACKER)
    for cell in nb.cells:
        assert isinstance(cell.get("execution_count", None), (int, type(None)))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            assert set(data) <= sanitize.SAFE_OUTPUT_TYPES | sanitize.CLEANED_OUTPUT_TYPES, data.keys()
            assert "application/javascript" not in data and "text/javascript" not in data
            assert "isolated" not in json.dumps(output.get("metadata", {}))
            if "text/html" in data:
                assert sanitize.clean_html("".join(data["text/html"]))[1] == [], data["text/html"]
                assert "<script" not in "".join(data["text/html"]) and "onerror=" not in "".join(data["text/html"])
            if "image/svg+xml" in data:
                svg = "".join(data["image/svg+xml"])
                assert "<script" not in svg and "onload=" not in svg
        if cell.cell_type in ("markdown", "raw") and sanitize.student_controlled(cell):
            source = "".join(cell.source)
            assert "<script" not in source and "onerror=" not in source and "ontoggle=" not in source, source
            assert "javascript:" not in source, source
            if cell.cell_type == "markdown":
                assert sanitize.sanitize_markdown(source, cell.get("attachments"))[1] == [], source
        for bundle in cell.get("attachments", {}).values():
            assert set(bundle) <= {"image/png", "image/jpeg", "image/gif", "image/svg+xml"}, bundle.keys()
            if "image/svg+xml" in bundle:
                assert "script" not in base64.b64decode(bundle["image/svg+xml"]).decode()
    assert "widgets" not in nb.metadata
    answer = "".join(nbgrading.cell_by_id(nb, "answer_outliers").source)
    assert ANSWER in answer
    for student in (ATTACKER, RAW):
        page = _feedback(graded, student).read_text()
        found = active_content(page)
        assert not found.handlers and not found.urls and not found.frames, (found.handlers, found.urls, found.frames)
        for attrs, body in found.scripts:  # only the template's MathJax loader and configuration
            assert "PWNED" not in body and "pwned_" not in body, body[:300]
            assert attrs.get("src", "").startswith("https://cdnjs.cloudflare.com/ajax/libs/mathjax/") or \
                attrs.get("type") == "text/x-mathjax-config", attrs
        assert ANSWER in page and "honest-html-output" in page and "honest-stream-output" in page
        assert "Notes of the hand-in" in page
    assert _pwned_files(graded) == []


def test_formgrader_renders_an_unsanitized_notebook_sanitized(graded):
    """Formgrader's exporter sanitizes at rendering: even a notebook graded without SanitizeHandIn."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    nb = _unsanitized(graded)
    config = nbgrading.course_config(graded)
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    exporter = HTMLExporter(config=config)
    page, _ = exporter.from_notebook_node(nb, resources={"assignment_id": LAB, "notebook_id": LAB,
                                                         "submission_id": "abc", "index": 0, "total": 1,
                                                         "base_url": "", "student": RAW, "last_name": None,
                                                         "first_name": None, "notebook_path": "x"})
    found = active_content(page)
    assert not found.urls and not found.frames, (found.urls, found.frames)
    assert set(h.split("=", 1)[1] for h in found.handlers) <= {"toggle_name(true);", "toggle_name(false);"}, found.handlers
    assert not [b for _, b in found.scripts if "PWNED" in b or "pwned_" in b]
    assert ANSWER in page


def _unsanitized(course: Path):
    """The attacker's autograded notebook as a grader without the sanitizer would have stored it:
    the graded copy (nbgrader's metadata, scores) with the hand-in's own markdown, attachments and
    raw cell, and the outputs the payload cell would have made."""
    import nbformat

    nb = _autograded(course, RAW)
    handed_in = payload_notebook()
    assert len(nb.cells) == len(handed_in.cells)
    for cell, original in zip(nb.cells, handed_in.cells):
        if cell.cell_type in ("markdown", "raw") and sanitize.student_controlled(cell):
            cell.source = original.source
            if "attachments" in original:
                cell.attachments = copy.deepcopy(original.attachments)
        if cell.cell_type == "code" and "display(HTML" in cell.source:
            cell.outputs = [nbformat.from_dict(o) for o in raw_outputs()]
    nb.metadata["widgets"] = copy.deepcopy(handed_in.metadata["widgets"])
    return nb


# ------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        message = "needs Debian's chromium: apt-get install chromium"
        if CI:
            pytest.fail(message + " (CI=true: nothing may be skipped)")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if CI:
            pytest.fail("playwright is missing (requirements.txt)")
        pytest.skip("pip install playwright (requirements.txt)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"])
        yield b
        b.close()


def _jupyterlab(course: Path, home: Path):
    from test_browser import JupyterLab  # the instructor's JupyterLab, as tests/test_browser.py starts it

    return JupyterLab(Path(sys.executable).with_name("jupyter"), course, home)


def _submission_id(course: Path, student: str) -> str:
    from nbgrader.api import Gradebook

    with Gradebook(nbgrading.gradebook_url(course)) as gb:
        return gb.find_submission_notebook(LAB, LAB, student).id


class Visit:
    """A browser context that records every request and console message, with the CDN cut off."""

    def __init__(self, browser):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.requests: list[tuple[str, str]] = []
        self.console: list[str] = []
        self.context.on("request", lambda r: self.requests.append((r.method, r.url)))
        self.context.route("https://cdnjs.cloudflare.com/**", lambda route: route.abort())
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.on("console", lambda m: self.console.append(m.text))

    def login(self, server):
        """Open JupyterLab with the token, as the instructor does before going to formgrader: the
        server sets its login and xsrf cookies (what a payload's fetch rides on)."""
        self.page.goto(server.url("/lab/tree"), wait_until="domcontentloaded")
        names = {c["name"] for c in self.context.cookies()}
        assert "_xsrf" in names and any(n.startswith("username-") for n in names), names

    def open(self, url: str, *, settle: float = 3.0):
        response = self.page.goto(url, wait_until="load")
        time.sleep(settle)  # an onerror, a timer, a fetch: give each its moment
        return response

    def markers(self) -> list:
        found = []
        for frame in self.page.frames:
            try:
                title, pwned = frame.evaluate("() => [document.title, String(window.__pwned)]")
            except Exception as err:  # noqa: BLE001 - a frame that cannot be read is reported
                found.append((frame.url, f"unreadable: {err}"))
                continue
            if title == "PWNED" or pwned != "undefined":
                found.append((frame.url, title, pwned))
        return found

    def writes(self) -> list:
        return [(m, u) for m, u in self.requests if "/api/contents" in u and m not in ("GET", "HEAD", "OPTIONS")]

    def close(self):
        self.context.close()


def _assert_nothing_ran(visit: Visit, course: Path, where: str):
    assert visit.markers() == [], (where, visit.markers())
    assert visit.writes() == [], (where, visit.writes())
    assert _pwned_files(course) == [], (where, _pwned_files(course))


def test_no_payload_runs_in_formgrader_or_the_feedback(graded, browser, tmp_path):
    server = _jupyterlab(graded, tmp_path / "home")
    visit = Visit(browser)
    try:
        visit.login(server)
        sid = _submission_id(graded, ATTACKER)
        response = visit.open(server.url(f"/formgrader/submissions/{sid}/"))
        assert response.status == 200
        policy = response.headers.get("content-security-policy", "")
        script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, policy
        assert "frame-src 'none'" in policy and "object-src 'none'" in policy and "base-uri 'none'" in policy
        # formgrader's own scripts run under the policy: the grades arrive, the test cells show their scores
        visit.page.wait_for_function("() => window.formgrader && formgrader.grades && formgrader.grades.loaded === true")
        assert visit.page.get_attribute("#test_add", "placeholder") == "10"
        assert visit.page.get_attribute("#test_mean", "placeholder") == "10"
        # and the template's inline handler (allowed by its hash): the eye icon shows the student's name
        assert not visit.page.locator("a.name-shown").is_visible()
        visit.page.locator("span.glyphicon.name-hidden").click()
        visit.page.locator("a.name-shown").wait_for(state="visible", timeout=10_000)
        body = visit.page.locator("body").inner_text()
        assert ANSWER in body and "honest-html-output" in body and "honest-stream-output" in body, body[:3000]
        assert "Notes of the hand-in" in body and "[removed <script>]" in body
        assert visit.page.locator("a[href^='javascript']").count() == 0
        _assert_nothing_ran(visit, graded, "formgrader")
        assert not [c for c in visit.console if "Refused to execute" in c and "formgrader/static" in c], visit.console

        # the feedback: through Jupyter's /files/ (sandboxed there) and as the student opens it, a local file
        visit.open(server.url(f"/files/grading/feedback/{ATTACKER}/{LAB}/{LAB}.html"))
        assert ANSWER in visit.page.locator("body").inner_text()
        _assert_nothing_ran(visit, graded, "feedback through /files/")
        visit.open(_feedback(graded, ATTACKER).resolve().as_uri())
        assert ANSWER in visit.page.locator("body").inner_text()
        _assert_nothing_ran(visit, graded, "feedback as a local file")

        # formgrader's URLs do not carry script into its templates
        for path in ('/formgrader/manage_submissions/";alert(1);"/', "/formgrader/gradebook/<script>x</script>/"):
            try:
                urllib.request.urlopen(server.url(urllib.parse.quote(path)), timeout=30)
                raise AssertionError(f"{path} was served")
            except urllib.error.HTTPError as err:
                assert err.code == 400, (path, err.code)
        with urllib.request.urlopen(server.url(f"/formgrader/manage_submissions/{LAB}/"), timeout=30) as ok:
            assert ok.status == 200

        # positive control: the same payload, run by hand in formgrader's page, is seen by every check
        visit.open(server.url(f"/formgrader/submissions/{sid}/"), settle=0.5)
        visit.page.evaluate("() => { %s }" % js("control"))
        deadline = time.time() + 30
        while not (graded / "pwned_control.txt").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert _pwned_files(graded) == ["pwned_control.txt"], "the control payload could not write: the checks prove nothing"
        assert visit.markers() and visit.writes()
        (graded / "pwned_control.txt").unlink()
    finally:
        visit.close()
        server.stop()


def test_the_policy_alone_stops_the_payloads(graded, browser, tmp_path):
    """Sanitizer off, an unsanitized notebook in place: formgrader's page still runs no payload."""
    config = graded / "nbgrader_config.py"
    original = config.read_text()
    stored = graded / "grading" / "autograded" / RAW / LAB / f"{LAB}.ipynb"
    kept = stored.read_bytes()
    import nbformat

    nbformat.write(_unsanitized(graded), str(stored))
    config.write_text(original + "\nc.HTMLExporter.preprocessors = []  # test: the sanitizer off\n")
    server = _jupyterlab(graded, tmp_path / "home")
    visit = Visit(browser)
    try:
        visit.login(server)
        response = visit.open(server.url(f"/formgrader/submissions/{_submission_id(graded, RAW)}/"))
        assert response.status == 200
        page = response.text()
        assert "<script>document.title=" in page or "onerror=\"document.title" in page, "the payloads are not on the page"
        visit.page.wait_for_function("() => window.formgrader && formgrader.grades && formgrader.grades.loaded === true")
        _assert_nothing_ran(visit, graded, "formgrader, policy only")
        assert [c for c in visit.console if "Content Security Policy" in c], visit.console
    finally:
        visit.close()
        server.stop()
        config.write_text(original)
        stored.write_bytes(kept)


def test_without_sanitizer_and_policy_the_payloads_run(graded, browser, tmp_path):
    """The attack of issue 18, as it was: nbgrader's formgrader as shipped (no sanitizer, no policy)
    runs the hand-in's payloads in the instructor's origin. This keeps the payloads above honest:
    they are live, so the tests that see none of them run show that the defences stop them."""
    config = graded / "nbgrader_config.py"
    original = config.read_text()
    stored = graded / "grading" / "autograded" / RAW / LAB / f"{LAB}.ipynb"
    kept = stored.read_bytes()
    import nbformat

    nbformat.write(_unsanitized(graded), str(stored))
    assert "coursetools.formgrader_guard.install()" in original
    config.write_text(original.replace("coursetools.formgrader_guard.install()", "pass")
                      + "\nc.HTMLExporter.preprocessors = []  # test: the sanitizer off\n")
    server = _jupyterlab(graded, tmp_path / "home")
    visit = Visit(browser)
    try:
        visit.login(server)
        visit.open(server.url(f"/formgrader/submissions/{_submission_id(graded, RAW)}/"), settle=5)
        ran = {p.name[len("pwned_"):-len(".txt")] for p in graded.glob("pwned_*.txt")}
        print("payloads that ran without the defences:", sorted(ran))
        assert {"md_script", "md_img", "md_details", "answer_img", "answer_script", "raw_out_script",
                "raw_out_img", "raw_out_js", "raw_out_md", "raw_out_png"} <= ran, sorted(ran)
        assert visit.markers() and visit.writes()
    finally:
        visit.close()
        server.stop()
        config.write_text(original)
        stored.write_bytes(kept)
        for p in graded.glob("pwned_*.txt"):
            p.unlink()
