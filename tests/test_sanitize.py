"""The sanitizer of hand-ins (coursetools/sanitize.py) and formgrader's page policy
(coursetools/formgrader_guard.py), without nbgrader runs or a browser (tests/test_formgrader_xss.py
has those): active content goes, honest content stays, and a second pass changes nothing."""
import base64
import copy
from html.parser import HTMLParser

import nbformat
import pytest

from coursetools import formgrader_guard, nbgrading, sanitize
from coursetools.sanitize import clean_html, clean_svg, sanitize_markdown

ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(1)>",
    "<img src=x onerror\n=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="java&#9;script:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt&colon;alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<img src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    '<iframe src="javascript:alert(1)"></iframe>',
    '<iframe srcdoc="&lt;script&gt;alert(1)&lt;/script&gt;"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="javascript:alert(1)">',
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    '<form action="javascript:alert(1)"><button>x</button></form>',
    '<button formaction="javascript:alert(1)">x</button>',
    '<input autofocus onfocus=alert(1)>',
    '<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>',
    '<svg><p><style><img src=x onerror=alert(1)></style></p></svg>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>',
    '<style>@import "http://evil/x.css";</style><div style="background:url(javascript:alert(1))">x</div>',
    '<base href="http://evil/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<link rel="import" href="http://evil/x.html">',
    '<!--<img src=x onerror=alert(1)>-->',
    '<![CDATA[<img src=x onerror=alert(1)>]]>',
    '<div data-toggle="collapse" data-target="<img src=x onerror=alert(1)>">x</div>',
    '<a id="formgrader" name="base_url" class="navbar-fixed-top score">x</a>',
    '<template><img src=x onerror=alert(1)></template>',
    '<textarea><img src=x onerror=alert(1)></textarea>',
    '<title><img src=x onerror=alert(1)></title>',
    '<xmp><img src=x onerror=alert(1)></xmp>',
    '<plaintext><img src=x onerror=alert(1)>',
    '</div></div></div><img src=x onerror=alert(1)>',
    '<scr<script>ipt>alert(1)</script>',
    '<img src="x` `<script>alert(1)</script>"` `>',
    '<img """><script>alert(1)</script>">',
    '<a href="#" onclick="alert(1)">x</a>',
]


class _Active(HTMLParser):
    """What a browser could run in a fragment (as the browser's own parser sees it, roughly)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "iframe", "object", "embed", "base", "meta", "link", "svg", "math", "form", "style",
                   "template", "frame", "frameset"):
            self.found.append(tag)
        for name, value in attrs:
            low = sanitize._URL_JUNK.sub("", value or "").lower()
            if name.startswith("on") or name in ("srcdoc", "formaction", "action", "style") or name.startswith("data"):
                self.found.append(f"{tag} {name}")
            if name in ("href", "src") and low.startswith(("javascript:", "vbscript:", "data:text")):
                self.found.append(f"{tag} {name}={value}")
            if name == "class" and {"score", "navbar-fixed-top"} & set((value or "").split()):
                self.found.append(f"{tag} class={value}")
            if name in ("id", "name") and not (value or "").startswith(sanitize.ID_PREFIX):
                self.found.append(f"{tag} {name}={value}")


def active(fragment: str) -> list:
    parser = _Active()
    parser.feed(fragment)
    parser.close()
    return parser.found


@pytest.mark.parametrize("attack", ATTACKS)
def test_clean_html_leaves_nothing_active(attack):
    for keep_newlines in (True, False):
        out, removed = clean_html(attack, keep_newlines=keep_newlines)
        assert active(out) == [], (attack, out)
        assert clean_html(out, keep_newlines=keep_newlines) == (out, []), (attack, out)  # a second pass finds nothing


@pytest.mark.parametrize("attack", ATTACKS)
def test_markdown_leaves_nothing_active(attack):
    source = f"# Answer\n\nSome text {attack} and more.\n\n{attack}\n\n[link](javascript:alert(1))"
    for always in (False, True):
        safe, removed = sanitize_markdown(source, always=always)
        rendered = sanitize.render_markdown(safe)
        assert active(rendered) == [], (attack, rendered)
        assert "Some text" in rendered
        again, more = sanitize_markdown(safe, always=always)
        assert again == safe and more == [], (attack, safe, again)


def test_honest_html_keeps_its_shape():
    table = ('<div>\n<style scoped>\n    .dataframe tbody tr th:only-of-type {vertical-align: middle;}\n</style>\n'
             '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n'
             '      <th>a</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th>0</th>\n      <td>1.5</td>\n'
             '    </tr>\n  </tbody>\n</table>\n</div>')
    out, removed = clean_html(table)
    assert removed == []  # a pandas table is not an attack: nothing reported
    for part in ('<table border="1" class="dataframe">', "<thead>", "<th>a</th>", "<td>1.5</td>", "</tbody>"):
        assert part in out, out
    assert "vertical-align" not in out  # its style sheet goes, quietly
    html = ('<p>An <b>answer</b> with <em>emphasis</em>, <code>a &lt; b</code>, a <a href="https://example.org">link</a>, '
            'an <img src="figure.png" alt="fig" width="200"> and <sub>1</sub><sup>2</sup>.</p>'
            '<ul><li>one</li></ul><blockquote>quote</blockquote><pre>x = 1\n\ny = 2</pre>')
    out, removed = clean_html(html)
    assert removed == []
    for part in ("<b>answer</b>", "<code>a &lt; b</code>", 'href="https://example.org"', 'src="figure.png"',
                 'width="200"', "<li>one</li>", "<pre>x = 1\n\ny = 2</pre>"):
        assert part in out, out


def test_honest_markdown_is_left_as_written():
    source = ("# Why the mean moves\n\nOne extreme value moves the sum, and so the mean, **without bound**: "
              "$\\bar x = \\frac{1}{n}\\sum_i x_i$ and $a < b$.\n\n```python\nprint('<b>')\n```\n\n"
              "| a | b |\n|---|---|\n| 1 | 2 |\n\n> a quote & more\n\n- [x] done\n\n"
              '<div align="center"><b>bold</b></div>\n\n![a figure](figure.png) [a link](https://example.org)')
    assert sanitize_markdown(source) == (source, [])
    shown, removed = sanitize_markdown(source, always=True)
    assert removed == []
    rendered = sanitize.render_markdown(shown)
    for part in ("without bound", "$a &lt; b$", "&lt;b&gt;", "<table>", "<blockquote>", 'type="checkbox"',
                 'src="figure.png"', 'href="https://example.org"', "<b>bold</b>"):
        assert part in rendered, (part, rendered)


def test_markdown_attachments():
    evil = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(1)</script><circle r="5"/></svg>'
    attachments = {"fig.svg": {"image/svg+xml": base64.b64encode(evil.encode()).decode()},
                   "page.html": {"text/html": base64.b64encode(b"<script>alert(1)</script>").decode()},
                   "ok.png": {"image/png": "iVBORw0KGgo="}}
    kept, removed = sanitize.sanitize_attachments(attachments)
    assert set(kept) == {"fig.svg", "ok.png"} and "attachment page.html" in removed
    svg = base64.b64decode(kept["fig.svg"]["image/svg+xml"]).decode()
    assert "script" not in svg and "onload" not in svg and "<circle" in svg
    source = "![a](attachment:fig.svg) ![b](attachment:page.html) ![c](attachment:ok.png)"
    safe, _ = sanitize_markdown(source, kept, always=True)
    rendered = sanitize.render_markdown(safe)
    assert "data:image/png;base64,iVBORw0KGgo=" in rendered and "text/html" not in rendered
    assert active(rendered) == []


def test_svg_outputs():
    import io

    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([1, 2, 3])
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    real = buf.getvalue()
    out, removed = clean_svg(real)
    assert removed == [] and out.count("<path") == real.count("<path") and "xlink:href=\"#" in out
    assert clean_svg(out) == (out, [])
    evil = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">'
            '<script>alert(1)</script><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">'
            '<img src="x" onerror="alert(1)"/></div></foreignObject><a href="javascript:alert(1)"><text>t</text></a>'
            '<animate attributeName="href" to="javascript:alert(1)"/><set attributeName="onload" to="alert(1)"/>'
            '<use xlink:href="http://evil/x.svg#a"/><image href="javascript:alert(1)"/>'
            '<style>@import url(http://evil/x.css);</style><rect fill="url(http://evil)" width="1"/></svg>')
    out, removed = clean_svg(evil)
    for bad in ("script", "onload", "foreignObject", "javascript", "animate", "<set", "http://evil", "@import"):
        assert bad not in out, (bad, out)
    assert "<rect" in out
    assert clean_svg("<svg onload=alert(1)>")[0] is None  # not XML: dropped whole
    assert clean_svg('<!DOCTYPE s [<!ENTITY x "y">]><svg xmlns="http://www.w3.org/2000/svg">&x;</svg>')[0] is None
    assert clean_svg("<html><script>alert(1)</script></html>")[0] is None


def _output(data, metadata=None, kind="display_data"):
    out = {"output_type": kind, "data": data, "metadata": metadata or {}}
    if kind == "execute_result":
        out["execution_count"] = 3
    return nbformat.from_dict(out)


def test_outputs():
    outputs = [
        _output({"application/javascript": "alert(1)", "text/plain": "<IPython.core.display.Javascript object>"}),
        _output({"application/javascript": "alert(1)"}),
        _output({"text/javascript": "alert(1)", "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}),
        _output({"text/html": '<b>ok</b><img src=x onerror=alert(1)>'}, {"text/html": {"isolated": True}}),
        _output({"image/png": "AAAA"}, {"image/png": {"width": "1 onerror=alert(1)", "height": 20, "alt": "a"},
                                        "filenames": {"image/png": "x.png"}}),
        _output({"text/markdown": "# t\n\n<script>alert(1)</script>"}),
        _output({"text/plain": "42"}, kind="execute_result"),
        nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "<script>x</script>"}),
    ]
    outputs[6]["execution_count"] = "<img src=x onerror=alert(1)>"
    kept, removed = sanitize.sanitize_outputs(copy.deepcopy(outputs))
    assert "application/javascript" in removed and "text/javascript" in removed
    assert kept[0].data == {"text/plain": "<IPython.core.display.Javascript object>"}
    assert "removed" in kept[1].data["text/plain"] and "application/javascript" in kept[1].data["text/plain"]
    assert set(kept[2].data) == {"text/plain"}
    assert kept[3].data["text/html"] == '<b>ok</b><img src="x">' and kept[3].metadata == {}
    assert kept[4].metadata == {"image/png": {"height": 20, "alt": "a"}}
    assert "<script" not in kept[5].data["text/markdown"] and "mlsec-sanitized" in kept[5].data["text/markdown"]
    assert kept[6].execution_count is None and kept[6].data == {"text/plain": "42"}
    assert kept[7].text == "<script>x</script>"  # streams are escaped by every renderer


def _cell(kind, source, **nbgrader):
    make = {"markdown": nbformat.v4.new_markdown_cell, "raw": nbformat.v4.new_raw_cell,
            "code": nbformat.v4.new_code_cell}[kind]
    cell = make(source)
    if nbgrader:
        cell.metadata["nbgrader"] = nbgrader
    return cell


def test_only_what_the_student_controls_is_touched():
    evil = "<img src=x onerror=alert(1)>"
    instructor = _cell("markdown", evil, grade_id="intro", locked=True, grade=False, solution=False)
    test_cell = _cell("markdown", evil, grade_id="t", locked=False, grade=True, solution=False)
    answer = _cell("markdown", evil, grade_id="answer", grade=True, solution=True, locked=False)
    forged = _cell("markdown", evil, locked=True, grade=False, solution=False)  # OverwriteCells took its id
    plain = _cell("markdown", evil)
    raw = _cell("raw", "<script>alert(1)</script>")
    assert not sanitize.student_controlled(instructor) and not sanitize.student_controlled(test_cell)
    assert all(sanitize.student_controlled(c) for c in (answer, forged, plain, raw))
    nb = nbformat.v4.new_notebook(cells=[instructor, test_cell, answer, forged, plain, raw])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    report = sanitize.sanitize_notebook(nb, always_render_markdown=False)
    assert [i for i, _ in report] == [2, 3, 4, 5]
    assert nb.cells[0].source == evil and nb.cells[1].source == evil  # restored from the gradebook by nbgrader
    for cell in nb.cells[2:]:
        assert "onerror" not in cell.source and "<script" not in cell.source
    assert "widgets" not in nb.metadata


def test_an_honest_notebook_is_stored_unchanged():
    nb = nbgrading.read_notebook(nbgrading.ROOT / "tests" / "fixtures" / "course" / "solutions" / "demo" / "demo.ipynb")
    nb.cells[1].outputs = [_output({"text/plain": "x"}, kind="execute_result"),
                           nbformat.from_dict({"output_type": "stream", "name": "stdout", "text": "ok\n"})]
    nb.cells[1].outputs[0]["execution_count"] = 1
    before = copy.deepcopy(nb)
    assert sanitize.sanitize_notebook(nb, always_render_markdown=False) == []
    assert nb == before


def test_the_config_runs_the_sanitizers_after_the_scores():
    config = nbgrading.course_config(nbgrading.ROOT)
    autograde = list(config.Autograde.autograde_preprocessors)
    at = autograde.index("coursetools.sanitize.SanitizeHandIn")
    assert at > autograde.index("nbgrader.preprocessors.SaveAutoGrades") > autograde.index("coursetools.integrity.CheckTestCells")
    assert "coursetools.sanitize.SanitizeForHTML" in config.HTMLExporter.preprocessors
    assert sanitize.SanitizeHandIn().enabled and sanitize.SanitizeForHTML().always_render_markdown


# ------------------------------------------------------------------------ formgrader's policy
def _formgrade_page(nb, **resources):
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    exporter = HTMLExporter(template_name="formgrade", extra_template_basedirs=[handlers.template_path])
    base = {"assignment_id": "demo", "notebook_id": "demo", "submission_id": "0123abcd", "index": 0, "total": 1,
            "base_url": "", "student": "alice", "last_name": None, "first_name": None, "notebook_path": "x"}
    base.update(resources)
    return exporter.from_notebook_node(nb, resources=base)[0]


def _script_src(policy: str) -> list[str]:
    return next(d for d in policy.split("; ") if d.startswith("script-src")).split()[1:]


def test_the_page_policy_allows_the_template_scripts_only():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# hello")])
    page = _formgrade_page(nb)
    scripts, handlers = formgrader_guard.page_inline_scripts(page)
    policy = formgrader_guard.submission_page_policy(page, static_origin="http://127.0.0.1:8888")
    allowed = _script_src(policy)
    assert "'unsafe-inline'" not in allowed and "'unsafe-eval'" not in allowed
    assert "http://127.0.0.1:8888/formgrader/static/" in allowed
    assert all(formgrader_guard._sha256(s) in allowed for s in scripts), "a template script would be blocked"
    assert sorted(handlers) == ["toggle_name(false);", "toggle_name(true);"]
    # a script that the sanitizer missed, and a value that broke out of its string, are not allowed
    injected = page.replace("</body>", "<script>alert(1)</script><img src=x onerror=\"toggle_name(true);alert(1)\"></body>")
    policy = formgrader_guard.submission_page_policy(injected, static_origin="http://h")
    assert formgrader_guard._sha256("alert(1)") not in policy
    assert formgrader_guard._sha256("toggle_name(true);alert(1)") not in policy
    broken = _formgrade_page(nb, notebook_id='demo";alert(1);"')
    scripts, _ = formgrader_guard.page_inline_scripts(broken)
    policy = formgrader_guard.submission_page_policy(broken, static_origin="http://h")
    leaked = [s for s in scripts if "alert(1)" in s]
    assert leaked and all(formgrader_guard._sha256(s) not in policy for s in leaked)


def test_path_parameters_that_could_reach_a_template_are_refused():
    for bad in ('demo";alert(1);"', "<script>", "a'b", "a\\b", "a`b", "a\nb"):
        assert formgrader_guard.UNSAFE_PATH_VALUE.search(bad), bad
    for good in ("demo", "lab1_extraction", "alice", "student.42@uni-x", "0123abcd", "sub/dir/figure.png"):
        assert not formgrader_guard.UNSAFE_PATH_VALUE.search(good), good


def test_install_does_nothing_outside_a_server(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "nbgrader.server_extensions.formgrader.handlers", raising=False)
    assert formgrader_guard.install() is False
