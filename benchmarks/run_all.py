"""Run every benchmark and print its tables (`make bench`).

    .venv/bin/python benchmarks/run_all.py [NAME ...]

bench_labs.py first (lab execution and autograding times), then every other benchmarks/bench_*.py
in name order, each in its own process so that one failing benchmark does not stop the rest.
NAME restricts the run (e.g. `labs watermark`). Exit status 1 if any benchmark failed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("bench_*.py"), key=lambda p: (p.name != "bench_labs.py", p.name))
    if names:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in names}
        unknown = wanted - {p.stem.removeprefix("bench_") for p in found}
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {sorted(unknown)}; available: "
                             f"{[p.stem.removeprefix('bench_') for p in found]}")
        found = [p for p in found if p.stem.removeprefix("bench_") in wanted]
    return found


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    env = dict(os.environ, LABKIT_PROGRESS=os.environ.get("LABKIT_PROGRESS", "0"))
    results = []
    for script in scripts(names):
        print(f"\n===== {script.name} =====", flush=True)
        start = time.perf_counter()
        # Scripts draw off-screen; bench_labs.py keeps the notebooks' own (inline) backend.
        script_env = env if script.name == "bench_labs.py" else {"MPLBACKEND": "Agg", **env}
        rc = subprocess.run([sys.executable, str(script)], cwd=str(HERE.parent), env=script_env).returncode
        results.append((script.name, rc, time.perf_counter() - start))
    print("\n===== summary =====")
    for name, rc, seconds in results:
        print(f"{name:<28} {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {seconds:7.1f} s")
    return 1 if any(rc for _, rc, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
