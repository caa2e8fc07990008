"""The speed benchmark runs end to end (tiny sizes) and prints its comparison table."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_ensemble_prints_all_three_variants():
    env = {**os.environ, "LABKIT_PROGRESS": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_ensemble.py"), "--k", "2", "--batch-sizes", "256",
           "--epochs", "1", "--repeats", "1", "--threads", "1"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if line.startswith("| k |"))
    for column in ("seq autograd s", "seq hand-written s", "batched s", "autograd / batched", "hand-written / batched"):
        assert column in header
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 2 | 256 |"))
    times = [float(v) for v in row.strip("|").split("|")[2:5]]
    assert all(t > 0 for t in times), row


def test_bench_sandbox_grades_the_same_submission_three_ways():
    env = {**os.environ, "LABKIT_PROGRESS": "0"}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sandbox.py"), "--repeats", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    header, _, row = [line for line in out.stdout.splitlines() if line.strip()][1:4]
    assert header.split()[:4] == ["lab", "limits", "s", "no"] and row.startswith("demo")
    limits, no_limits, no_sandbox, ratio = (float(v) for v in row.split()[1:5])
    assert limits > 0 and no_limits > 0 and no_sandbox > 0 and abs(ratio - limits / no_limits) < 0.01


def test_bench_dpsgd_prints_the_speed_up_row():
    env = {**os.environ, "LABKIT_PROGRESS": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_dpsgd.py"), "--k", "2", "--epochs", "1", "--repeats", "1", "--no-notebook"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| 2 | 1 |"))
    sequential, batched, speedup = (float(v) for v in row.strip("|").split("|")[2:5])
    assert sequential > 0 and batched > 0 and abs(speedup - sequential / batched) < 0.1
