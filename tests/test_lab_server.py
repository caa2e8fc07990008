"""`make lab`'s JupyterLab starts at the course root with the nbgrader extensions loaded."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_jupyterlab_serves_the_labs_with_nbgrader(tmp_path):
    port, token = _free_port(), "labkit-test"
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}", "--allow-root"]
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> tuple[int, str]:
        req = urllib.request.Request(base + path, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()

    try:
        deadline = time.time() + 90
        while True:
            try:
                status, _ = get("/api/status")
                break
            except OSError:
                assert proc.poll() is None, f"jupyter lab exited: {proc.stdout.read()[-3000:]}"
                assert time.time() < deadline, "jupyter lab did not start within 90 s"
                time.sleep(1)
        assert status == 200
        status, listing = get("/api/contents/labs")
        names = {item["name"] for item in json.loads(listing)["content"]}
        lab_dirs = {p.name for p in (ROOT / "labs").iterdir() if p.is_dir()}
        assert lab_dirs and lab_dirs <= names
        status, page = get("/lab")
        assert status == 200 and "@jupyter/nbgrader" in page  # the lab extension is served
        status, _ = get("/formgrader")  # nbgrader's server extension answers
        assert status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
