"""Execute notebooks and report their failing cells as JSON (run by the student edition's own Python).

    <edition>/.venv/bin/python tests/edition_exec.py REPORT.json NOTEBOOK.ipynb [...]

Needs only nbformat and nbclient (both come with the edition's nbgrader), so that the kernel is the
edition's interpreter, with the edition's labkit, and nothing of the course's environment. Each
notebook runs in its own folder, two at a time, every cell for at most 300 s (the grader's limit);
errors do not stop a notebook. The report maps each notebook to its run time and failing cells.
"""
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path: str) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    failing = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                meta = cell.metadata.get("nbgrader", {})
                failing.append({"cell": i, "grade_id": meta.get("grade_id"), "test": bool(meta.get("grade")),
                                "ename": out["ename"], "evalue": out["evalue"], "source": cell.source})
    return {"seconds": seconds, "failing": failing, "cells": len(nb.cells)}


def main() -> None:
    report, notebooks = sys.argv[1], sys.argv[2:]
    os.environ.setdefault("LABKIT_PROGRESS", "0")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(notebooks, pool.map(run, notebooks)))
    Path(report).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
