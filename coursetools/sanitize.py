"""No script from a hand-in runs for the instructor: sanitize what a student controls before it is shown.

nbgrader's formgrader renders a submission with nbconvert in the instructor's Jupyter origin, and
nbconvert does not sanitize by default: a ``<script>`` or an ``<img onerror=...>`` in a markdown
cell, a ``text/html`` or ``application/javascript`` output, ran there with the instructor's rights
(the server's contents API, the terminals, ...). The feedback page is rendered the same way.

What a student controls in an autograded notebook: every output (the kernel that made them ran the
student's code, test cells included), every markdown and raw cell that nbgrader does not restore
(written answers, cells without nbgrader metadata, cells the student added), and the attachments
of those cells. Locked cells with a ``grade_id`` are the instructor's: nbgrader's ``OverwriteCells``
has put the gradebook's source back into them before grading (a cell that claims to be locked
under an unknown id loses its ``grade_id`` there, so it is sanitized too).

Two preprocessors, one policy:

* :class:`SanitizeHandIn` (in ``c.Autograde.autograde_preprocessors``, after nbgrader's
  ``SaveAutoGrades``, so that no score depends on it) cleans the autograded notebook that is
  stored: outputs are reduced to an allowlist of mimetypes (scripts, widgets and unknown types
  are dropped with a visible note), ``text/html``, ``text/markdown`` and ``image/svg+xml`` are
  sanitized, image metadata must be numeric, execution counts integers; a markdown or raw cell
  is rewritten (as the sanitized HTML it renders to) only when its rendering held something
  unsafe, so that an honest notebook reads as it was written.
* :class:`SanitizeForHTML` (``c.HTMLExporter.preprocessors``: formgrader's manual-grading view and
  ``generate_feedback``) does the same at every rendering and always replaces a student's markdown
  by its sanitized rendering, so that what the page shows is exactly what passed the allowlist,
  whoever produced the autograded notebook.

The HTML sanitizer (:func:`clean_html`) parses with the standard library and writes a new document
from the parse: only allowlisted elements and attributes, every text and attribute value escaped,
URLs limited to ``http``, ``https``, ``mailto``, fragments and relative paths (images may be
``data:image/...``), ids prefixed (``user-content-``), classes limited to those nbconvert's
renderer writes, every element closed. ``<script>``, ``<style>``, ``<iframe>``, ``<object>``,
inline ``<svg>``/``<math>``, forms and the like are removed with their content (the dangerous
ones leave a visible ``[removed <tag>]`` note). SVG outputs are parsed as XML (``defusedxml``) and
rebuilt from an allowlist of SVG elements without event attributes or external references.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
from html.parser import HTMLParser

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool

__all__ = ["clean_html", "clean_svg", "render_markdown", "sanitize_markdown", "sanitize_outputs",
           "sanitize_attachments", "student_controlled", "sanitize_notebook", "SanitizeHandIn",
           "SanitizeForHTML", "SAFE_OUTPUT_TYPES", "CLEANED_OUTPUT_TYPES", "ID_PREFIX"]

# ------------------------------------------------------------------------------------------ HTML
ID_PREFIX = "user-content-"
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
         "track", "wbr", "keygen", "frame", "basefont", "isindex"}
_ALLOWED_TAGS = {
    "a", "abbr", "acronym", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite",
    "code", "col", "colgroup", "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption",
    "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input", "ins", "kbd", "li", "mark",
    "ol", "p", "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var",
    "wbr", "section", "article", "aside", "header", "footer", "nav", "main", "hgroup", "address",
}
# Removed together with everything inside them (their content is script, style, a document of its
# own, or text a browser parses differently from its surroundings).
_DROP_WITH_CONTENT = {
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "noscript", "noembed",
    "noframes", "template", "textarea", "title", "xmp", "plaintext", "svg", "math", "select", "option",
    "optgroup", "datalist", "audio", "video", "source", "track", "canvas", "head", "base", "link", "meta",
    "param", "portal", "fencedframe", "dialog", "slot", "keygen", "output", "progress", "meter", "map", "area",
}
# Removed without a report: style sheets (pandas writes one for its tables) and the parts of a
# page or a form an honest fragment may hold; they cannot run script once the rest is gone.
_QUIET = {"style", "title", "head", "textarea", "select", "option", "optgroup", "datalist", "output",
          "progress", "meter", "dialog", "slot", "map", "area", "canvas"}
# ... and leave a visible note, so that the grader sees that something was there.
_NOTED = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "svg", "math", "template",
          "noscript", "base", "meta", "link", "portal", "fencedframe"}
_GLOBAL_ATTRS = {"title", "lang", "dir", "align", "class", "id"}
_TAG_ATTRS = {
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "valign", "width"},
    "th": {"colspan", "rowspan", "valign", "width", "scope"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type", "reversed"},
    "li": {"value"},
    "table": {"border", "cellpadding", "cellspacing", "summary", "width"},
    "details": {"open"},
    "input": {"type", "checked", "disabled"},
    "q": {"cite"},
    "blockquote": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "time": {"datetime"},
}
_URL_ATTRS = {"href", "src", "cite"}
# Attributes whose loss is reported (they run script or load or open something); any other
# attribute that is not allowed (style, data-*, name, rel, ...) is dropped without a word.
_REPORTED_ATTRS = {"href", "src", "cite", "srcdoc", "srcset", "formaction", "action", "background", "poster",
                   "ping", "data", "codebase", "dynsrc", "lowsrc", "xlink:href", "xmlns:xlink", "is"}
_NUMERIC_ATTRS = {"width", "height", "colspan", "rowspan", "span", "start", "value", "border",
                  "cellpadding", "cellspacing"}
_NUMERIC = re.compile(r"^\s*\d{1,6}(\.\d{1,4})?\s*(%|px)?\s*$")
_BOOLEAN_ATTRS = {"checked", "disabled", "open", "reversed"}


def _pygments_classes() -> set[str]:
    try:
        from pygments.token import STANDARD_TYPES
    except ImportError:  # pragma: no cover - pygments comes with nbconvert
        return set()
    return {name for name in STANDARD_TYPES.values() if name}


# The classes nbconvert's renderer writes (code highlighting, heading anchors, task lists, pandas'
# tables). Any other class is dropped: the page's own CSS and scripts (bootstrap's, formgrader's)
# give meaning to classes such as "navbar-fixed-top" or "score".
_ALLOWED_CLASSES = _pygments_classes() | {
    "highlight", "hll", "anchor-link", "dataframe", "task-list-item", "task-list-item-checkbox",
    "mlsec-sanitized", "mlsec-removed", "mlsec-raw", "jp-RenderedHTMLCommon",
}
_LANGUAGE_CLASS = re.compile(r"^language-[\w+#.-]{1,40}$")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_DATA_IMAGE = re.compile(r"^data:image/(png|jpe?g|gif|webp|bmp|svg\+xml)[;,]")
_URL_JUNK = re.compile(r"[\x00-\x20\x7f-\x9f]+")


def _url_ok(value: str, *, image: bool) -> bool:
    """Whether a URL may stay: http(s), mailto (links), data:image (images), fragments, relative.

    Browsers drop ASCII whitespace and control characters inside a scheme (``java&#9;script:``),
    so the scheme is read with all of them removed."""
    squeezed = _URL_JUNK.sub("", value).lower()
    if squeezed.startswith("#") or not squeezed:
        return True
    scheme = _SCHEME.match(squeezed)
    if scheme is None:
        return True  # relative (a path, a query)
    name = scheme.group(1)
    if name in ("http", "https"):
        return True
    if name == "mailto":
        return not image
    return image and bool(_DATA_IMAGE.match(squeezed))


class _Cleaner(HTMLParser):
    def __init__(self, *, keep_newlines: bool):
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.removed: list[str] = []  # what made the input unsafe (or not what it would render)
        self.skip: str | None = None  # the element being dropped with its content
        self.skip_depth = 0
        self.pre = 0
        self.keep_newlines = keep_newlines

    # -- tags
    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, closed=True)

    def _start(self, tag, attrs, *, closed):
        tag = tag.lower()
        if self.skip is not None:
            if tag == self.skip and not closed:
                self.skip_depth += 1
            return
        if tag in _DROP_WITH_CONTENT:
            if tag not in _QUIET:
                self.removed.append(f"<{tag}>")
            if tag in _NOTED:
                self.out.append(f'<code class="mlsec-removed">[removed &lt;{tag}&gt;]</code>')
            if tag not in _VOID and not closed:
                self.skip, self.skip_depth = tag, 1
            return
        if tag not in _ALLOWED_TAGS:
            return  # the tag goes, what it holds stays
        kept = self._attributes(tag, attrs)
        if tag == "input":
            if dict(kept).get("type", "").lower() != "checkbox":
                return
            kept = [(k, v) for k, v in kept if k != "disabled"] + [("disabled", None)]
        if tag == "a" and not dict(kept).get("href", "#").strip().startswith("#"):
            kept += [("rel", "noopener noreferrer nofollow"), ("target", "_blank")]  # away from the page
        text = "".join(f" {k}" if v is None else f' {k}="{self._attr_value(v)}"' for k, v in kept)
        self.out.append(f"<{tag}{text}>")
        if tag in _VOID:
            return
        if closed:
            self.out.append(f"</{tag}>")
            return
        self.open.append(tag)
        if tag == "pre":
            self.pre += 1

    def _attributes(self, tag, attrs):
        allowed = _GLOBAL_ATTRS | _TAG_ATTRS.get(tag, set())
        kept, seen = [], set()
        for name, value in attrs:
            name = name.lower()
            if name in seen:
                continue
            seen.add(name)
            if name not in allowed:
                if name.startswith("on") or name in _REPORTED_ATTRS:
                    self.removed.append(f"{name}=")
                continue
            if name in _BOOLEAN_ATTRS:
                kept.append((name, None))
                continue
            value = "" if value is None else value
            if name == "class":
                tokens = [t for t in value.split() if t in _ALLOWED_CLASSES or _LANGUAGE_CLASS.match(t)]
                if tokens:
                    kept.append((name, " ".join(tokens)))
                continue
            if name == "id":
                value = value.strip()
                if value:
                    kept.append((name, value if value.startswith(ID_PREFIX) else ID_PREFIX + value))
                continue
            if name in _URL_ATTRS:
                if not _url_ok(value, image=(tag == "img" and name == "src")):
                    self.removed.append(f"{name}={value[:40]}")
                    continue
                if name == "href" and value.strip().startswith("#") and not value.strip().startswith("#" + ID_PREFIX):
                    value = "#" + ID_PREFIX + value.strip()[1:]
            elif name in _NUMERIC_ATTRS and not _NUMERIC.match(value):
                self.removed.append(f"{name}={value[:40]}")
                continue
            elif name == "type" and tag == "ol" and value not in ("1", "a", "A", "i", "I"):
                continue
            kept.append((name, value))
        return kept

    def _attr_value(self, value: str) -> str:
        return html.escape(value, quote=True).replace("\n", "&#10;").replace("\r", "&#13;")

    def handle_endtag(self, tag):
        tag = tag.lower()
        if self.skip is not None:
            if tag == self.skip:
                self.skip_depth -= 1
                if self.skip_depth == 0:
                    self.skip = None
            return
        if tag not in self.open:
            return  # a stray end tag (or one of an element that was not kept)
        while self.open:
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == "pre":
                self.pre -= 1
            if top == tag:
                break

    # -- text
    def handle_data(self, data):
        if self.skip is not None:
            return
        text = html.escape(data, quote=False)
        if self.pre and not self.keep_newlines:
            text = text.replace("\r\n", "\n").replace("\n", "&#10;")
        self.out.append(text)

    def handle_comment(self, data):
        pass  # comments go (conditional comments, and the parser differences around them)

    def handle_decl(self, decl):
        pass

    def handle_pi(self, data):
        pass

    def unknown_decl(self, data):
        pass

    def finish(self) -> str:
        self.close()
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out)


def clean_html(text: str, *, keep_newlines: bool = True) -> tuple[str, list[str]]:
    """Sanitize an HTML fragment.

    Returns ``(html, removed)``: the fragment rebuilt from allowlisted elements and attributes
    (every element closed, every text and attribute escaped), and what was taken out because it
    could run script or load something (``"<script>"``, ``"onerror="``, ``"href=javascript:..."``;
    empty when nothing was). What is dropped or changed without a report: style sheets and
    ``style`` attributes, form controls, other unknown elements (their text stays) and attributes,
    classes other than nbconvert's, ids (prefixed with :data:`ID_PREFIX`, fragment links follow),
    comments; links to other pages open in a new tab. With ``keep_newlines=False`` the result holds
    no blank line (newlines inside ``<pre>`` are written as ``&#10;``), so that markdown passes it
    through as one HTML block.
    """
    cleaner = _Cleaner(keep_newlines=keep_newlines)
    cleaner.feed(str(text).replace("\x00", "\ufffd"))
    out = cleaner.finish()
    if not keep_newlines:
        out = re.sub(r"\r\n?", "\n", out)
        out = re.sub(r"\n[ \t\f\v]*(?=\n)", "", out)
    return out, cleaner.removed


# ------------------------------------------------------------------------------------------- SVG
_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_NS = "http://www.w3.org/1999/xlink"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_SVG_TAGS = {
    "svg", "g", "defs", "desc", "title", "symbol", "use", "image", "switch", "path", "rect", "circle",
    "ellipse", "line", "polyline", "polygon", "text", "tspan", "textPath", "clipPath", "mask", "pattern",
    "marker", "linearGradient", "radialGradient", "stop", "style", "filter", "feBlend", "feColorMatrix",
    "feComponentTransfer", "feComposite", "feFlood", "feGaussianBlur", "feMerge", "feMergeNode", "feOffset",
    "feFuncA", "feFuncR", "feFuncG", "feFuncB", "feMorphology", "feTile", "feTurbulence", "feDropShadow",
}
_CSS_BAD = re.compile(r"@import|expression\s*\(|javascript:|behavior\s*:|-moz-binding|url\s*\(\s*['\"]?\s*(?!#)",
                      re.IGNORECASE)
_SVG_DATA_IMAGE = re.compile(r"^data:image/(png|jpe?g|gif|webp);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)


def clean_svg(text: str) -> tuple[str | None, list[str]]:
    """Sanitize an SVG document. Returns ``(svg, removed)``; ``svg`` is None when the input is not
    an SVG document that XML parses (it is then dropped whole)."""
    from defusedxml import ElementTree as SafeTree

    removed: list[str] = []
    try:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        root = SafeTree.fromstring(data)
    except Exception as err:  # noqa: BLE001 - anything XML cannot read is not shown
        return None, [f"svg: {type(err).__name__}"]
    if root.tag != f"{{{_SVG_NS}}}svg":
        return None, ["svg: not an <svg> root"]

    def walk(element):
        for child in list(element):
            tag = child.tag if isinstance(child.tag, str) else ""
            local = tag.split("}", 1)[1] if tag.startswith(f"{{{_SVG_NS}}}") else None
            if local not in _SVG_TAGS or (local == "style" and _CSS_BAD.search(child.text or "")):
                if local != "metadata":  # matplotlib's RDF: nothing to report
                    removed.append(f"<{local or tag or 'node'}>")
                element.remove(child)
                continue
            walk(child)
        for name in list(element.attrib):
            value = element.attrib[name]
            local = name.split("}", 1)[1] if name.startswith("{") else name
            namespaced = name.startswith("{")
            keep = True
            if local.lower().startswith("on"):
                keep = False
            elif namespaced and name not in (f"{{{_XLINK_NS}}}href", f"{{{_XML_NS}}}space"):
                keep = False
            elif local == "href":
                v = _URL_JUNK.sub("", value)
                image = element.tag == f"{{{_SVG_NS}}}image"
                keep = v.startswith("#") or (image and bool(_SVG_DATA_IMAGE.match(value.strip())))
            elif _CSS_BAD.search(value):
                keep = False
            if not keep:
                removed.append(f"{local}=")
                del element.attrib[name]

    walk(root)
    return _write_svg(root, top=True), removed


def _write_svg(element, *, top: bool = False) -> str:
    """Serialize a cleaned SVG tree (every element in the SVG namespace, attributes plain or
    ``xlink:href``/``xml:space``), text and attributes escaped."""
    local = element.tag.split("}", 1)[1]
    attrs = []
    if top:
        attrs += [("xmlns", _SVG_NS), ("xmlns:xlink", _XLINK_NS)]
    for name, value in element.attrib.items():
        if name.startswith(f"{{{_XLINK_NS}}}"):
            name = "xlink:" + name.split("}", 1)[1]
        elif name.startswith(f"{{{_XML_NS}}}"):
            name = "xml:" + name.split("}", 1)[1]
        attrs.append((name, value))
    head = local + "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in attrs)
    body = html.escape(element.text or "", quote=False) + "".join(_write_svg(child) for child in element)
    tail = html.escape(element.tail or "", quote=False) if not top else ""
    return f"<{head}>{body}</{local}>{tail}"


# -------------------------------------------------------------------------------------- markdown
class _Attachments(dict):
    """A cell's attachments, where one that is missing (or was dropped) is an empty image."""

    def __contains__(self, name):
        return True

    def __missing__(self, name):
        return {"image/png": ""}


def render_markdown(source: str, attachments: dict | None = None) -> str:
    """Markdown to HTML exactly as nbconvert's HTML exporter renders a markdown cell (math kept for
    MathJax, ``attachment:`` images inlined as data URLs; a missing attachment is an empty image)."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath

    renderer = IPythonRenderer(escape=False, attachments=_Attachments(attachments or {}), anchor_link_text="¶")
    return MarkdownWithMath(renderer=renderer).render(source)


def _as_block(fragment: str) -> str:
    return f'<div class="mlsec-sanitized">{fragment}</div>\n'


def sanitize_markdown(source: str, attachments: dict | None = None, *, always: bool = False) -> tuple[str, list[str]]:
    """A markdown text a student wrote, made safe to render.

    The text is rendered as nbconvert renders it and the HTML sanitized. When the rendering held
    nothing unsafe and ``always`` is false, the text is returned unchanged; otherwise it becomes
    the sanitized HTML as one block (markdown passes such a block through untouched, so rendering
    it again gives that HTML). A text that cannot be rendered (a missing attachment) is shown
    escaped. Returns ``(source, removed)``.
    """
    try:
        rendered = render_markdown(source, attachments)
    except Exception as err:  # noqa: BLE001 - shown as text instead
        escaped = html.escape(source, quote=False).replace("\r\n", "\n").replace("\n", "&#10;")
        return _as_block(f'<pre class="mlsec-raw">{escaped}</pre>'), [f"markdown: {type(err).__name__}"]
    clean, removed = clean_html(rendered, keep_newlines=False)
    if not removed and (not always or clean.strip() == source.strip() == rendered.strip()):
        return source, removed  # safe as it is, or already in its sanitized form
    return _as_block(clean), removed


# --------------------------------------------------------------------------------------- outputs
SAFE_OUTPUT_TYPES = frozenset({
    "text/plain", "text/latex", "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
    "application/json", "application/pdf",
})
"""Output mimetypes kept as they are: nbconvert escapes or base64-embeds them."""
CLEANED_OUTPUT_TYPES = frozenset({"text/html", "text/markdown", "image/svg+xml"})
"""Output mimetypes kept once sanitized. Every other mimetype (``application/javascript``,
``text/javascript``, widget views, ``text/vnd.mermaid``, renderers' own types) is dropped."""
_IMAGE_META = {"width", "height", "unconfined", "alt"}


def _clean_output_metadata(meta) -> dict:
    def one(entry):
        kept = {}
        for key, value in dict(entry or {}).items():
            if key in ("width", "height"):
                if isinstance(value, (int, float)) and not isinstance(value, bool) or (
                        isinstance(value, str) and _NUMERIC.match(value)):
                    kept[key] = value
            elif key == "unconfined" and isinstance(value, bool):
                kept[key] = value
            elif key == "alt" and isinstance(value, str):
                kept[key] = value
        return kept

    out = one({k: v for k, v in dict(meta or {}).items() if k in _IMAGE_META})
    for mimetype, entry in dict(meta or {}).items():
        if "/" in mimetype and isinstance(entry, dict):
            cleaned = one(entry)
            if cleaned:
                out[mimetype] = cleaned
    return out


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def sanitize_outputs(outputs, *, always_render_markdown: bool = True) -> tuple[list, list[str]]:
    """The outputs of a code cell, reduced to what may be shown. Returns ``(outputs, removed)``."""
    from nbformat import NotebookNode

    kept, removed = [], []
    for output in outputs or []:
        kind = output.get("output_type")
        if kind in ("stream", "error"):
            kept.append(output)
            continue
        if kind not in ("display_data", "execute_result"):
            removed.append(f"output {kind}")
            continue
        data, dropped = {}, []
        for mimetype, value in dict(output.get("data", {})).items():
            if mimetype in SAFE_OUTPUT_TYPES:
                data[mimetype] = value
            elif mimetype == "text/html":
                data[mimetype], gone = clean_html(_text(value))
                removed += gone
            elif mimetype == "text/markdown":
                data[mimetype], gone = sanitize_markdown(_text(value), always=always_render_markdown)
                removed += gone
            elif mimetype == "image/svg+xml":
                svg, gone = clean_svg(_text(value))
                removed += gone
                if svg is not None:
                    data[mimetype] = svg
                else:
                    dropped.append(mimetype)
            else:
                dropped.append(mimetype)
        removed += dropped
        if not data:
            data["text/plain"] = f"[output removed by the grader's sanitizer: {', '.join(dropped) or 'empty'}]"
        output["data"] = NotebookNode(data)
        output["metadata"] = NotebookNode(_clean_output_metadata(output.get("metadata")))
        if kind == "execute_result":
            count = output.get("execution_count")
            output["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
        kept.append(output)
    return kept, removed


_ATTACHMENT_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]*$")


def sanitize_attachments(attachments) -> tuple[dict, list[str]]:
    """A markdown cell's attachments: raster images kept, SVG sanitized, anything else dropped."""
    from nbformat import NotebookNode

    kept, removed = {}, []
    for name, bundle in dict(attachments or {}).items():
        clean = {}
        for mimetype, value in dict(bundle or {}).items():
            value = _text(value)
            if mimetype in _ATTACHMENT_TYPES and _BASE64.match(value):
                clean[mimetype] = value
            elif mimetype == "image/svg+xml":
                try:
                    svg, gone = clean_svg(base64.b64decode(value).decode("utf-8"))
                except (binascii.Error, ValueError, UnicodeDecodeError):
                    svg, gone = None, ["attachment svg: not base64 UTF-8"]
                removed += gone
                if svg is not None:
                    clean[mimetype] = base64.b64encode(svg.encode("utf-8")).decode("ascii")
            else:
                removed.append(f"attachment {mimetype}")
        if clean:
            kept[name] = NotebookNode(clean)
        else:
            removed.append(f"attachment {name}")
    return kept, removed


# -------------------------------------------------------------------------------------- notebooks
def student_controlled(cell) -> bool:
    """Whether the cell's source is the student's: everything but a locked nbgrader cell with a
    ``grade_id`` (nbgrader's autograde has restored those from the gradebook)."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if not isinstance(meta, dict) or not meta.get("grade_id"):
        return True
    if meta.get("solution"):
        return True  # a written answer
    return not (meta.get("grade") or meta.get("locked"))  # nbgrader.utils.is_locked


def sanitize_notebook(nb, *, always_render_markdown: bool) -> list[tuple[int, list[str]]]:
    """Sanitize a notebook in place. Returns ``[(cell index, removed), ...]`` for the cells where
    something unsafe was taken out."""
    report = []
    if isinstance(nb.get("metadata"), dict):
        nb.metadata.pop("widgets", None)  # widget state: rendered by a widget manager loaded from a CDN
    for index, cell in enumerate(nb.cells):
        removed: list[str] = []
        if cell.cell_type == "code":
            cell.outputs, removed = sanitize_outputs(cell.get("outputs", []),
                                                     always_render_markdown=always_render_markdown)
            count = cell.get("execution_count")
            if not (isinstance(count, int) and not isinstance(count, bool)):
                cell.execution_count = None
        elif student_controlled(cell):
            if "attachments" in cell:
                cell.attachments, gone = sanitize_attachments(cell.attachments)
                removed += gone
                if not cell.attachments:
                    del cell["attachments"]
            if cell.cell_type == "markdown":
                # a dropped attachment leaves its reference dangling: render without it
                source, gone = sanitize_markdown(_text(cell.source), cell.get("attachments"),
                                                 always=always_render_markdown or bool(removed))
                removed += gone
                if source != _text(cell.source):
                    cell.source = source
            elif cell.cell_type == "raw":
                clean, gone = clean_html(_text(cell.source))
                removed += gone
                if gone or always_render_markdown:
                    cell.source = clean
        if removed:
            report.append((index, removed))
    return report


class SanitizeHandIn(Preprocessor):
    """Autograde: sanitize what the student controls in the notebook that is stored (see the
    module's docstring). Registered in ``c.Autograde.autograde_preprocessors`` after
    ``SaveAutoGrades``; it changes no score. Markdown is rewritten only where it was unsafe."""

    enabled = Bool(True).tag(config=True)  # nbconvert registers preprocessors disabled unless they say so
    always_render_markdown = Bool(
        False, help="Replace every student markdown cell by its sanitized HTML, not only unsafe ones."
    ).tag(config=True)

    def preprocess(self, nb, resources):
        for index, removed in sanitize_notebook(nb, always_render_markdown=self.always_render_markdown):
            cell = nb.cells[index]
            name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"cell {index}"
            shown = ", ".join(sorted(set(removed)))[:300]
            self.log.warning("sanitized %s (%s) of the hand-in: removed %s", name, cell.cell_type, shown)
        return nb, resources


class SanitizeForHTML(SanitizeHandIn):
    """Formgrader's manual-grading view and the feedback (``c.HTMLExporter.preprocessors``):
    sanitize again at every rendering, and show every student markdown cell as its sanitized HTML."""

    always_render_markdown = Bool(
        True, help="Replace every student markdown cell by its sanitized HTML, not only unsafe ones."
    ).tag(config=True)
