"""Run a grading kernel inside a bubblewrap sandbox: the student's code cannot read or write the course.

``nbgrader autograde`` executes a submission in a Jupyter kernel. With
``--Execute.kernel_manager_class=coursetools.sandbox.SandboxKernelManager`` (what
:func:`coursetools.nbgrading.autograde` passes unless the sandbox is switched off) that kernel is
started through ``bwrap`` (Debian's ``bubblewrap``, unprivileged user namespaces):

* the file system is an **allowlist**, all read-only: the system folders (``/usr``, ``/etc``,
  ``/sys``), the interpreter, the installed packages, ``labkit`` itself and the folder of the
  submission being graded (the kernel's working directory), except its notebooks: nbgrader has
  already written the hidden tests into the notebook it executes, so the kernel sees an empty
  file there. The course (``solutions/``, the gradebook, other submissions, feedback, the
  course's sources), other repositories and home folders do not exist inside;
* ``/tmp`` and ``/run`` are empty ``tmpfs`` folders: a scratch space that vanishes with the kernel;
* no network (``--unshare-net``), its own PID, IPC and UTS namespaces, a new session (no
  terminal injection), killed with its parent;
* a cleared environment: only the variables of ``ENV_ALLOW`` pass (no tokens, no database URLs).

The kernel talks to nbgrader over ZeroMQ's IPC transport, through sockets in a private folder
that is the only writable place shared with the host (a network namespace of its own has no
route to the host's loopback; it also ends nbgrader's old problem of parallel kernels colliding
on ports).

``MLSEC_SANDBOX=off`` starts kernels without the sandbox (with a warning on every kernel); the
grader refuses to run at all without ``bwrap`` unless that opt-out is given.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from jupyter_client import AsyncKernelManager

__all__ = ["SandboxKernelManager", "SandboxUnavailable", "bwrap_path", "check_available", "sandbox_enabled", "bwrap_args"]

INSTALL_HINT = (
    "Install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; Fedora: `sudo dnf install bubblewrap`), "
    "or grade without a sandbox with `make grade SANDBOX=off` (`mlsec-grade --no-sandbox`), which lets "
    "student code read and write everything the grader can."
)
# The only environment variables a grading kernel inherits (the grader's may hold secrets, such as
# a database URL with a password).
ENV_ALLOW = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "NBGRADER_EXECUTION", "LABKIT_PROGRESS", "LABKIT_DEVICE",
             "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "MPLBACKEND")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create a sandbox on this machine."""


def sandbox_enabled() -> bool:
    """False when the instructor opted out with ``MLSEC_SANDBOX=off``."""
    return os.environ.get("MLSEC_SANDBOX", "bwrap").strip().lower() not in {"off", "0", "no", "none", "false"}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def check_available() -> str:
    """The path of a working ``bwrap``; :class:`SandboxUnavailable` (saying how to fix it) otherwise.
    The probe runs once per process and path (a grading run starts one kernel per submission)."""
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable(f"bubblewrap (`bwrap`) is not installed: the grader will not run student code unsandboxed. {INSTALL_HINT}")
    return _probe(path)


@functools.lru_cache(maxsize=None)
def _probe(path: str) -> str:
    probe = subprocess.run([path, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"`bwrap` is installed but cannot create a sandbox here ({probe.stderr.strip() or probe.returncode}); "
                                 f"user namespaces may be disabled. {INSTALL_HINT}")
    return path


SYSTEM = ("/usr", "/etc", "/sys")  # the system's software and configuration, read-only
MERGED = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # links into /usr, or folders


def bwrap_args(*, cwd: Path, runtime: Path) -> list[str]:
    """The ``bwrap`` command line (without the command to run) for a grading kernel.

    An allowlist: the new root holds only the system folders, the interpreter, the installed
    packages, labkit and the submission's folder (all read-only), empty ``/tmp``, ``/dev``,
    ``/proc``, and the IPC folder. Everything else (the course, other repositories, home folders,
    other mounts) does not exist inside.
    """
    import labkit  # the one package a submission must import; its source comes back read-only

    labkit_dir = Path(labkit.__file__).resolve().parent
    args = [bwrap_path() or "bwrap"]
    for path in SYSTEM:
        if Path(path).exists():
            args += ["--ro-bind", path, path]
    for path in MERGED:
        p = Path(path)
        if p.is_symlink():
            args += ["--symlink", os.readlink(p), path]
        elif p.is_dir():
            args += ["--ro-bind", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    software = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), labkit_dir}
    for path in sorted(software, key=lambda q: len(q.parts)):
        if not any(str(path).startswith(system + "/") for system in SYSTEM):
            args += ["--ro-bind", str(path), str(path)]
    cwd = Path(cwd).resolve()
    args += ["--ro-bind", str(cwd), str(cwd)]
    # nbgrader writes the notebook under grading, hidden tests included, into the working directory
    # before it executes it: the kernel sees empty files in its place.
    for nb in sorted(cwd.glob("*.ipynb")):
        args += ["--ro-bind", "/dev/null", str(nb)]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where the grading machine has one
        args += ["--dev-bind", str(dev), str(dev)]
    args.append("--clearenv")
    for name in ENV_ALLOW:
        if name in os.environ:
            args += ["--setenv", name, os.environ[name]]
    home = "/tmp/home"
    args += ["--bind", str(runtime), str(runtime), "--dir", home,
             "--setenv", "HOME", home, "--setenv", "TMPDIR", "/tmp", "--setenv", "MPLCONFIGDIR", f"{home}/.matplotlib",
             "--setenv", "IPYTHONDIR", f"{home}/.ipython", "--setenv", "JUPYTER_RUNTIME_DIR", str(runtime),
             "--chdir", str(cwd),
             "--unshare-all", "--die-with-parent", "--new-session", "--"]
    return args


class SandboxKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels run in a bubblewrap sandbox over IPC sockets."""

    async def _async_pre_start_kernel(self, **kw):
        self._sandbox_cwd = Path(kw.get("cwd") or os.getcwd())
        self._sandboxed = sandbox_enabled()
        if self._sandboxed:
            check_available()
            self._runtime = Path(tempfile.mkdtemp(prefix="mlsec-kernel-"))
            os.chmod(self._runtime, 0o700)
            self.transport = "ipc"
            self.ip = str(self._runtime / "kernel")
            self.connection_file = str(self._runtime / "kernel.json")
            # A signal to bwrap does not reach the kernel (its own PID namespace): interrupt a
            # cell that runs past its timeout with an interrupt_request on the control channel.
            self.kernel_spec.interrupt_mode = "message"
        else:
            warnings.warn("MLSEC_SANDBOX=off: this grading kernel runs WITHOUT a sandbox; student code can read and "
                          "write everything the grader can (the gradebook, hidden tests, other submissions).", stacklevel=2)
            print("WARNING: grading kernel started without a sandbox (MLSEC_SANDBOX=off)", file=sys.stderr)
        return await super()._async_pre_start_kernel(**kw)

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if not getattr(self, "_sandboxed", False):
            return cmd
        return bwrap_args(cwd=self._sandbox_cwd, runtime=self._runtime) + cmd

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        runtime = getattr(self, "_runtime", None)
        if runtime is not None and not restart:
            shutil.rmtree(runtime, ignore_errors=True)
