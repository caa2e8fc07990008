"""Formgrader's pages in the instructor's Jupyter origin: a strict Content-Security-Policy where it
fits, and no script through formgrader's URLs.

nbgrader's formgrader is a Jupyter server extension: its pages share the origin (cookies, the
contents API, terminals) of the instructor's JupyterLab. A ``Content-Security-Policy`` that forbids
inline script cannot be set for the whole server (JupyterLab itself needs inline script), and
formgrader's own templates use inline scripts and ``onclick`` attributes. :func:`install` patches
formgrader's handlers (nbgrader 0.9) so that:

* **The manual-grading page** (``/formgrader/submissions/<id>``, where a hand-in is rendered) is
  sent with a strict policy: scripts only from formgrader's static folder and MathJax's folder on
  cdnjs, inline scripts only by their SHA-256 (the page's own inline scripts, recognised as the
  ones nbgrader's ``formgrade`` template writes: any value put into them must be a plain string),
  inline event handlers only ``toggle_name(...)`` (``'unsafe-hashes'``), no ``eval``, no plugin,
  no frame, images only from the server and ``data:``, ``base-uri 'none'``, forms only to the
  server. A script that the sanitizer (:mod:`coursetools.sanitize`) let through would still not run.
  MathJax's inline configuration is not run under this policy (MathJax 2 evaluates it), so
  ``$...$`` is shown as TeX there (``$$...$$`` and ``\\(...\\)`` are typeset).
* **A submission's own files** (``/formgrader/submissions/<id>/<path>``, e.g. an image a notebook
  shows) are sent with ``sandbox`` and ``default-src 'none'``: an HTML or SVG file opened from
  there runs nothing, and in no case in the instructor's origin.
* **Every formgrader page** refuses (400) a path parameter holding ``< > " ' ` \\`` or a control
  character: formgrader's templates write the assignment, notebook and student ids from the URL
  into inline scripts unescaped, so a link in a hand-in such as
  ``/formgrader/manage_submissions/";fetch(...);"`` would run. The other pages keep Jupyter's
  policy plus ``object-src 'none'; base-uri 'self'`` (they need their inline scripts).

``nbgrader_config.py`` calls :func:`install`; it patches only where formgrader's handlers are
loaded (a Jupyter server), and does nothing in nbgrader's command line or in a grading worker.
"""
from __future__ import annotations

import base64
import hashlib
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["install", "installed", "submission_page_policy", "page_inline_scripts", "MATHJAX_SOURCE",
           "UNSAFE_PATH_VALUE"]

_HANDLERS = "nbgrader.server_extensions.formgrader.handlers"
_BASE = "nbgrader.server_extensions.formgrader.base"
MATHJAX_SOURCE = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/"
"""Where the formgrade template's MathJax comes from (nbconvert's ``mathjax()`` macro)."""
UNSAFE_PATH_VALUE = re.compile(r"[<>\"'`\\\x00-\x1f\x7f]")
_JS_TYPES = {"", "text/javascript", "application/javascript", "module", "text/ecmascript", "application/ecmascript"}
_PLAIN_STRING = re.compile(r'"[^"\\<>\r\n]*"')
_JINJA_VALUE = re.compile(r"\{\{.*?\}\}", re.S)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _skeleton(script: str) -> str:
    """A script with every plain double-quoted string emptied: the formgrade template writes values
    only into such strings, so a page script and its template source have the same skeleton
    unless a value broke out of its string."""
    return _PLAIN_STRING.sub('""', script)


class _Scripts(HTMLParser):
    """The inline scripts (executable types) and the inline event handlers of a page, as written."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self.handlers: list[str] = []
        self._inline: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.handlers += [v or "" for k, v in attrs.items() if k.lower().startswith("on")]
        if tag == "script" and "src" not in attrs and (attrs.get("type") or "").strip().lower() in _JS_TYPES:
            self._inline = []

    def handle_data(self, data):
        if self._inline is not None:
            self._inline.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._inline is not None:
            self.scripts.append("".join(self._inline))
            self._inline = None


def page_inline_scripts(page: str) -> tuple[list[str], list[str]]:
    """``(scripts, handlers)``: the inline scripts and ``on...`` attribute values of an HTML page."""
    parser = _Scripts()
    parser.feed(page)
    parser.close()
    return parser.scripts, parser.handlers


def _template_sources() -> list[str]:
    """The text of nbgrader's templates for the manual-grading page."""
    import nbgrader.server_extensions.formgrader as formgrader

    folder = Path(formgrader.__file__).resolve().parent / "templates"
    return [p.read_text() for p in (folder / "formgrade" / "formgrade_macros.html.j2",
                                    folder / "formgrade" / "index.html.j2", folder / "formgrade_404.tpl")
            if p.is_file()]


_TRUSTED: tuple[set[str], set[str]] | None = None


def _trusted() -> tuple[set[str], set[str]]:
    """Skeletons of the template's inline scripts, and its inline event handlers (static text)."""
    global _TRUSTED
    if _TRUSTED is None:
        scripts, handlers = set(), set()
        for text in _template_sources():
            found, on = page_inline_scripts(_JINJA_VALUE.sub("", text))
            scripts |= {_skeleton(s) for s in found if "{%" not in s}
            handlers |= {h for h in on if "{" not in h}
        _TRUSTED = scripts, handlers
    return _TRUSTED


def submission_page_policy(page: str, *, static_origin: str, base_url: str = "",
                           report_uri: str | None = None) -> str:
    """The Content-Security-Policy for one rendering of the manual-grading page.

    ``static_origin`` is ``scheme://host[:port]`` as the browser reaches the server; scripts may
    come from ``<static_origin><base_url>/formgrader/static/`` and MathJax's folder, and inline
    scripts are allowed by hash only if they are the template's own (same skeleton)."""
    skeletons, handlers = _trusted()
    scripts, on = page_inline_scripts(page)
    allowed = sorted({_sha256(s) for s in scripts if _skeleton(s) in skeletons})
    allowed_on = sorted({_sha256(h) for h in on if h in handlers})
    base = base_url.rstrip("/")
    script_src = [f"{static_origin}{base}/formgrader/static/", MATHJAX_SOURCE, *allowed]
    if allowed_on:
        script_src += ["'unsafe-hashes'", *allowed_on]
    directives = [
        "default-src 'self'",
        "script-src " + " ".join(script_src),
        f"style-src 'self' 'unsafe-inline' {MATHJAX_SOURCE}",
        f"img-src 'self' data: {MATHJAX_SOURCE}",
        f"font-src 'self' data: {MATHJAX_SOURCE}",
        "connect-src 'self'",
        "object-src 'none'",
        "frame-src 'none'",
        "worker-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
    if report_uri:
        directives.append(f"report-uri {report_uri}")
    return "; ".join(directives)


def installed() -> bool:
    """Whether formgrader's handlers in this process carry the guard."""
    module = sys.modules.get(_HANDLERS)
    return bool(module is not None and getattr(module, "_mlsec_guarded", False))


def install() -> bool:
    """Patch formgrader's handlers, if they are loaded in this process (idempotent). Returns
    whether they carry the guard now."""
    handlers = sys.modules.get(_HANDLERS)
    base = sys.modules.get(_BASE)
    if handlers is None or base is None:
        return False
    if getattr(handlers, "_mlsec_guarded", False):
        return True
    from jupyter_server.base.handlers import JupyterHandler
    from tornado import web

    BaseHandler = base.BaseHandler
    jupyter_policy = JupyterHandler.content_security_policy

    def content_security_policy(self) -> str:
        policy = jupyter_policy.fget(self)
        if isinstance(self, handlers.SubmissionFilesHandler):
            return policy + "; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
        return policy + "; object-src 'none'; base-uri 'self'"

    async def prepare(self, *args, **kwargs):
        values = [v for v in list(self.path_args or []) + list((self.path_kwargs or {}).values()) if v]
        if any(UNSAFE_PATH_VALUE.search(v) for v in values):
            raise web.HTTPError(400, "formgrader: a path parameter holds a character ids never hold")
        return await super(BaseHandler, self).prepare(*args, **kwargs)

    submission_write = handlers.SubmissionHandler.write

    def write(self, chunk):
        if isinstance(chunk, bytes):
            text = chunk.decode("utf-8", "replace")
        else:
            text = chunk if isinstance(chunk, str) else None
        if text is not None and "<html" in text[:4096].lower():
            origin = f"{self.request.protocol}://{self.request.host}"
            base_url = self.settings.get("base_url", "/")
            report = base_url.rstrip("/") + "/api/security/csp-report"
            self.set_header("Content-Security-Policy",
                            submission_page_policy(text, static_origin=origin, base_url=base_url, report_uri=report))
        return submission_write(self, chunk)

    BaseHandler.content_security_policy = property(content_security_policy)
    BaseHandler.prepare = prepare
    handlers.SubmissionHandler.write = write
    handlers._mlsec_guarded = True
    return True
