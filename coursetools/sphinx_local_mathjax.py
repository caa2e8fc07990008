"""Sphinx extension: serve MathJax from the built book, so formulas render offline.

Sphinx loads MathJax from a CDN by default, and a student reading the book on a train sees raw
LaTeX. The ``jupyter-server-mathjax`` package (in requirements.txt) ships MathJax 2.7 with the
STIX-Web fonts (about 12 MB). When it is installed, this extension points ``mathjax_path`` at a copy of it under
``_static/mathjax/`` and copies the files there at the end of an HTML build. Without the package
the book keeps the CDN, and the build log says so.

Enabled in ``_config.yml`` under ``sphinx.extra_extensions`` as ``coursetools.sphinx_local_mathjax``
(the package is installed with the project).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

TARGET = "mathjax"  # folder under _static in the built HTML
CONFIG = "TeX-AMS-MML_HTMLorMML-full"  # MathJax 2 combined configuration (TeX input, HTML-CSS output)


def mathjax_source() -> Path | None:
    """The folder holding ``MathJax.js`` in the installed ``jupyter_server_mathjax``, or None."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    static = Path(jupyter_server_mathjax.__file__).parent / "static"
    return static if (static / "MathJax.js").is_file() else None


def _configure(app, config) -> None:
    if mathjax_source() is None:
        logger.info("sphinx_local_mathjax: jupyter-server-mathjax is not installed; MathJax stays on its CDN")
        return
    config.mathjax_path = f"{TARGET}/MathJax.js?config={CONFIG}"
    # MathJax 2 reads its settings from mathjax2_config: the same delimiters as Sphinx writes.
    config.mathjax2_config = {
        "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]], "processEscapes": True},
        # the package ships the STIX-Web fonts only; never look for fonts on the reader's machine
        "HTML-CSS": {"availableFonts": [], "preferredFont": None, "webFont": "STIX-Web", "imageFont": None},
    }
    # A MathJax 3 configuration object would be read by MathJax 2 as its own: drop it, and keep
    # myst-parser from writing one (and from marking sections with MathJax 3's ignore classes).
    config.mathjax3_config = None
    config.myst_update_mathjax = False


def _copy(app, exception) -> None:
    source = mathjax_source()
    if exception is not None or source is None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / TARGET
    shutil.copytree(source, target, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", _configure, priority=900)  # after myst-nb has set its defaults
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
