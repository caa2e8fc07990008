"""Shared pytest settings: quiet progress bars and one torch thread.

The models here are tiny: on a 2-core machine, torch's inter-op threading costs more than it saves
(a small MLP fit measured 4-5x faster with one thread when the machine was busy).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("LABKIT_PROGRESS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def installed_edition(tmp_path_factory):
    """The student edition, built and installed as a student would: `make setup` in the edition, a
    fresh venv from the edition's own requirements (a few minutes; pip's cache makes it faster)."""
    from coursetools import student

    root = Path(__file__).resolve().parents[1]
    ed = student.build(root, tmp_path_factory.mktemp("edition") / "student", make_zip=False, book=False)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # the edition's venv is made from the base interpreter, not from the course's venv
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(sys.prefix))
    proc = subprocess.run(["make", "setup", f"PYTHON={sys._base_executable}"], cwd=ed, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"make setup failed in the edition:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return ed
