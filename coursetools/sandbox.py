"""Run a grading kernel inside a bubblewrap sandbox: the student's code cannot read or write the course.

``nbgrader autograde`` executes a submission in a Jupyter kernel. ``nbgrader_config.py`` makes
every kernel nbgrader starts a :class:`SandboxKernelManager`, which starts it through ``bwrap``
(Debian's ``bubblewrap``). The sandbox holds whether the grader runs as root or as a user:

* **The file system is an allowlist**, all read-only: the system folders (``/usr``, ``/etc``,
  ``/sys``), the interpreter, the installed packages and ``labkit``. The course (``solutions/``,
  the gradebook, every hand-in, the one under grading included), other repositories and home
  folders do not exist inside. The kernel starts in an empty ``/tmp`` with ``python -I``: nothing
  handed in beside a notebook can be imported, and ``PYTHON*`` variables are ignored.
* **Writable is only memory, and bounded**: ``/tmp``, ``/dev/shm`` and ``/run`` are tmpfs
  folders of a fixed size that vanish with the kernel. No folder of the host is writable: the
  kernel binds its ZeroMQ sockets in its own ``/run``, and the grader reaches them through
  ``/proc/<pid>/root`` (the kernel's connection file comes in read-only).
* **No privilege**: a non-root uid and gid inside, no capabilities (effective, permitted,
  inheritable, ambient and bounding sets empty), ``no_new_privs``, and a seccomp filter
  (:mod:`coursetools.seccomp`) that denies mount, umount, unshare, setns, ptrace, keyctl, bpf and
  the rest of what changes mounts, namespaces or other processes. As root, bwrap sets up the
  mounts and ``setpriv`` drops to a uid of its own for each kernel (``uid_base`` + a random
  offset), which owns no file of the host; as a user, bwrap maps the kernel to ``nobody`` in a
  user namespace it cannot leave (``--disable-userns``).
* **Limits** (:class:`SandboxKernelManager` traits, set in ``nbgrader_config.py``): memory
  (``RLIMIT_DATA``: the heap and every private writable mapping), processes and threads
  (``RLIMIT_NPROC``), CPU time (``RLIMIT_CPU``), the size of one file (``RLIMIT_FSIZE``), open
  files, no core dumps, and the tmpfs sizes. :class:`SandboxExecute` (nbgrader's ``Execute``,
  configured in ``autograde_preprocessors``) caps the bytes of output kept per cell and per
  notebook, and turns a kernel that dies (a limit, a crash) into an error in that cell and
  "not run" in the cells after it, so that the tests that passed before keep their points.
* no network (``--unshare-net``), its own PID, IPC, UTS and cgroup namespaces, a new session (no
  terminal injection), killed with its parent; a cleared environment (``ENV_ALLOW`` only).

``MLSEC_SANDBOX=off`` starts kernels without the sandbox (with a warning on every kernel); the
grader refuses to run at all without ``bwrap`` unless that opt-out is given.

Which limit applies where: the rlimits, the tmpfs sizes and the output caps everywhere bwrap runs.
Memory counts per process (a kernel that starts child processes gets the limit in each), CPU time
per process, and the process limit counts the tasks (processes and threads) of the kernel's uid:
exact as root (a uid per kernel), approximate as a user (the user's other tasks are counted
before the kernel starts, and the kernel's uid is the user's). A cgroup (one budget for the whole
kernel tree) is not used: this needs a delegated cgroup v2, which systemd's ``--scope`` gives
where systemd is PID 1; see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import asyncio
import functools
import json
import os
import pwd
import random
import select
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from jupyter_client import AsyncKernelManager
from nbgrader.preprocessors import Execute
from nbformat import NotebookNode
from traitlets import Bool, Float, Integer, Unicode

from . import checks, seccomp

__all__ = ["SandboxKernelManager", "SandboxExecute", "SandboxUnavailable", "SandboxLimitError", "bwrap_path",
           "check_available", "sandbox_enabled", "bwrap_args", "rlimit_args", "INSIDE_RUN"]

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
INSIDE_RUN = "/run"                # the kernel's sockets and its connection file, inside
INSIDE_CONNECTION = f"{INSIDE_RUN}/kernel.json"
INSIDE_HOME = "/tmp/home"
NOBODY = 65534                     # the kernel's uid and gid inside when the grader is not root
GiB, MiB = 2**30, 2**20


class SandboxLimitError(RuntimeError):
    """A grading kernel stopped or was cut off by one of the sandbox's limits."""


def _helpers() -> dict[str, str]:
    """``prlimit`` (util-linux) everywhere, ``setpriv`` (util-linux) when the grader is root."""
    names = ("prlimit", "setpriv") if os.geteuid() == 0 else ("prlimit",)
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise SandboxUnavailable(f"the sandbox needs {' and '.join(missing)} from util-linux "
                                 f"(Debian/Ubuntu: `sudo apt-get install util-linux`)")
    return found


def rlimit_args(*, memory: int, processes: int, cpu_seconds: int, file_size: int, open_files: int) -> list[str]:
    """``prlimit`` options for a kernel (soft = hard, but for CPU time: SIGXCPU at the limit, SIGKILL
    five seconds later). 0 leaves a limit unset."""
    out = ["--core=0"]
    for flag, value in (("--data", memory), ("--nproc", processes), ("--fsize", file_size), ("--nofile", open_files)):
        if value:
            out.append(f"{flag}={int(value)}")
    if cpu_seconds:
        out.append(f"--cpu={int(cpu_seconds)}:{int(cpu_seconds) + 5}")
    return out


def bwrap_args(*, connection_file: Path | None, seccomp_fd: int, info_fd: int | None = None, uid: int | None = None,
               tmp_bytes: int = 1 * GiB, shm_bytes: int = 256 * MiB, run_bytes: int = 1 * MiB,
               software: list[Path] | None = None, labkit_source: Path | None = None) -> list[str]:
    """The ``bwrap`` command line (without the command to run) for a grading kernel.

    An allowlist: the new root holds only the system folders, the interpreter, the installed
    packages and labkit (all read-only), the kernel's connection file (read-only, at
    ``INSIDE_CONNECTION``), sized tmpfs folders at ``/tmp``, ``/dev/shm`` and ``/run``, a minimal
    ``/dev`` and ``/proc``. No folder of the host is writable inside.

    Args:
        connection_file: the kernel's own connection file on the host (ip ``/run/kernel``).
        seccomp_fd: a file descriptor the caller passes on, holding :func:`seccomp.filter_program`.
        info_fd: where bwrap writes ``{"child-pid": N}`` (the grader reaches the sockets through it).
        uid: as root, the uid that ``setpriv`` drops to inside (the caller puts ``setpriv`` in the
            command); None for a user, whom bwrap maps to ``nobody`` in a user namespace.
        software: the folders to bind besides the system's; default: the interpreter's prefixes
            and labkit (tests pass others to probe the sandbox with system tools alone).
        labkit_source: a folder to show at labkit's place instead of labkit (the student
            edition's labkit, graded regions stubbed, for a lab whose hidden checks run outside).
    """
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
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(int(tmp_bytes)), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(int(shm_bytes)), "--tmpfs", "/dev/shm",
             "--perms", "1777", "--size", str(int(run_bytes)), "--tmpfs", INSIDE_RUN]
    if connection_file is not None:
        args += ["--ro-bind", str(connection_file), INSIDE_CONNECTION]
    labkit_dir = None
    if software is None:
        import labkit  # the one package a submission must import; its source comes back read-only

        labkit_dir = Path(labkit.__file__).resolve().parent
        software = [Path(sys.base_prefix), Path(sys.prefix), labkit_dir]
    software = {Path(p).resolve() for p in software}
    software = sorted((p for p in software if not any(str(p).startswith(system + "/") for system in SYSTEM)),
                      key=lambda q: len(q.parts))
    # bwrap makes missing parents 0700, which the kernel's uid could not pass through: make them 0755.
    parents = sorted({str(a) for p in software for a in p.parents if a != Path("/")}, key=len)
    for parent in parents:
        args += ["--perms", "0755", "--dir", parent]
    for path in software:
        source = labkit_source if labkit_source is not None and path == labkit_dir else path
        args += ["--ro-bind", str(source), str(path)]
    for dev in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where the grading machine has one
        args += ["--dev-bind", str(dev), str(dev)]
    args.append("--clearenv")
    for name in ENV_ALLOW:
        if name in os.environ:
            args += ["--setenv", name, os.environ[name]]
    args += ["--perms", "1777", "--dir", INSIDE_HOME, "--remount-ro", "/dev", "--remount-ro", "/",
             "--setenv", "HOME", INSIDE_HOME, "--setenv", "TMPDIR", "/tmp",
             "--setenv", "MPLCONFIGDIR", f"{INSIDE_HOME}/.matplotlib", "--setenv", "IPYTHONDIR", f"{INSIDE_HOME}/.ipython",
             "--setenv", "JUPYTER_RUNTIME_DIR", INSIDE_RUN, "--chdir", "/tmp",
             "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--cap-drop", "ALL"]
    if uid is None:  # a user: bwrap's user namespace, inside which no new one can be made
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--disable-userns"]
    else:  # root: only what setpriv needs to drop to `uid`, which it does before anything else runs
        args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    args += ["--seccomp", str(seccomp_fd)]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    args += ["--die-with-parent", "--new-session", "--"]
    return args


def _tasks_of(uid: int) -> int:
    """How many tasks (processes and threads) of ``uid`` run now: what ``RLIMIT_NPROC`` counts."""
    count = 0
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    count += sum(1 for _ in (proc / "task").iterdir())
            except OSError:
                continue
    return count


def _exit_reason(code: int | None, km: "SandboxKernelManager") -> str:
    """What a sandboxed kernel's exit status says (bwrap exits with 128 + the signal that killed it)."""
    if code is None:
        return "the kernel stopped answering"
    signal = code - 128 if code > 128 else (-code if code < 0 else 0)
    if signal == 24:  # SIGXCPU
        return f"the kernel used up its CPU time limit ({km.cpu_time_limit} s) and was stopped"
    if signal == 25:  # SIGXFSZ
        return f"the kernel wrote a file larger than its limit ({km.file_size_limit} bytes) and was stopped"
    if signal == 9:
        return ("the kernel was killed (SIGKILL: the CPU time limit's hard stop, the machine running out of "
                "memory, or the grader)")
    if signal:
        return f"the kernel died from signal {signal}"
    return f"the kernel exited with status {code}"


class SandboxKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernels run in a bubblewrap sandbox, within limits.

    The limits are traits: set them in ``nbgrader_config.py``, e.g.
    ``c.SandboxKernelManager.memory_limit = 8 * 2**30``; 0 turns one off.
    """

    memory_limit = Integer(4 * GiB, help="bytes of heap and private writable memory per kernel process "
                           "(RLIMIT_DATA); a larger allocation raises MemoryError").tag(config=True)
    process_limit = Integer(256, help="processes and threads the kernel may run at once (RLIMIT_NPROC)").tag(config=True)
    cpu_time_limit = Integer(3600, help="CPU seconds per kernel process (RLIMIT_CPU); past it the kernel is stopped, "
                             "and the cells not finished score 0").tag(config=True)
    file_size_limit = Integer(1 * GiB, help="bytes of one file the kernel writes (RLIMIT_FSIZE)").tag(config=True)
    open_files_limit = Integer(1024, help="open file descriptors per kernel process (RLIMIT_NOFILE)").tag(config=True)
    tmp_size = Integer(1 * GiB, help="bytes of the kernel's /tmp (a tmpfs, in memory)").tag(config=True)
    shm_size = Integer(256 * MiB, help="bytes of the kernel's /dev/shm (a tmpfs; PyTorch's data loaders "
                       "share tensors through it)").tag(config=True)
    enforce_limits = Bool(True, help="False: the sandbox without the resource limits (for benchmarks)").tag(config=True)
    uid_base = Integer(2_000_000_000, help="as root, each kernel runs as uid_base + a random offset "
                       "below uid_span, a uid that owns no file (set it clear of /etc/subuid ranges)").tag(config=True)
    uid_span = Integer(1_000_000).tag(config=True)
    labkit_source = Unicode("", help="a folder shown at labkit's place inside (SandboxExecute sets the "
                            "student edition's labkit for a lab with hidden checks)").tag(config=False)

    async def _async_pre_start_kernel(self, **kw):
        self._sandboxed = sandbox_enabled()
        if not self._sandboxed:
            warnings.warn("MLSEC_SANDBOX=off: this grading kernel runs WITHOUT a sandbox; student code can read and "
                          "write everything the grader can (the gradebook, hidden tests, other submissions).", stacklevel=2)
            print("WARNING: grading kernel started without a sandbox (MLSEC_SANDBOX=off)", file=sys.stderr)
            return await super()._async_pre_start_kernel(**kw)
        check_available()
        self._tools = _helpers()
        self._root = os.geteuid() == 0
        self._uid = self.uid_base + random.SystemRandom().randrange(self.uid_span) if self._root else None
        self._runtime = Path(tempfile.mkdtemp(prefix="mlsec-kernel-"))  # 0700: the host's side only
        self.transport = "ipc"
        self.ip = str(self._runtime / "kernel")
        self.connection_file = str(self._runtime / "host.json")
        # A signal to bwrap does not reach the kernel (its own PID namespace): interrupt a cell
        # that runs past its timeout with an interrupt_request on the control channel.
        self.kernel_spec.interrupt_mode = "message"
        program = seccomp.filter_program()
        self._seccomp_r, w = os.pipe()
        os.write(w, program)  # a few hundred bytes: fits the pipe's buffer
        os.close(w)
        self._info_r, self._info_w = os.pipe()
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        kw["pass_fds"] = (self._seccomp_r, self._info_w)
        kw.pop("cwd", None)  # the kernel starts in its own /tmp, not beside the hand-in
        return cmd, kw

    def _write_kernel_connection_file(self) -> Path:
        """The kernel's copy of the connection file: the same ports and key, its sockets in /run."""
        info = self.get_connection_info()
        info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
        info["ip"] = f"{INSIDE_RUN}/kernel"
        path = self._runtime / "kernel.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        if self._uid is not None:
            os.chown(path, self._uid, self._uid)  # readable by the kernel's uid alone
        return path

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if not getattr(self, "_sandboxed", False):
            return cmd
        self.write_connection_file()
        inside = self._write_kernel_connection_file()
        cmd = [INSIDE_CONNECTION if part == self.connection_file else part for part in cmd]
        if Path(cmd[0]).name.startswith("python"):
            cmd.insert(1, "-I")  # isolated: no PYTHON* variables, no script folder or cwd on sys.path
        prefix = []
        if self.enforce_limits:
            processes = self.process_limit
            if processes and self._uid is None:  # a user: RLIMIT_NPROC counts the user's other tasks too
                processes += _tasks_of(os.getuid())
            prefix += [self._tools["prlimit"], *rlimit_args(memory=self.memory_limit, processes=processes,
                                                             cpu_seconds=self.cpu_time_limit,
                                                             file_size=self.file_size_limit,
                                                             open_files=self.open_files_limit), "--"]
        if self._uid is not None:
            prefix += [self._tools["setpriv"], f"--reuid={self._uid}", f"--regid={self._uid}", "--clear-groups",
                       "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        limits = dict(tmp_bytes=self.tmp_size, shm_bytes=self.shm_size) if self.enforce_limits else \
            dict(tmp_bytes=16 * GiB, shm_bytes=16 * GiB)
        return bwrap_args(connection_file=inside, seccomp_fd=self._seccomp_r, info_fd=self._info_w,
                          uid=self._uid, labkit_source=Path(self.labkit_source) if self.labkit_source else None,
                          **limits) + prefix + cmd

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        finally:
            if getattr(self, "_sandboxed", False):
                os.close(self._seccomp_r)
                os.close(self._info_w)
        if getattr(self, "_sandboxed", False):
            pid = await asyncio.get_running_loop().run_in_executor(None, self._child_pid)
            # The kernel's sockets live in its own /run; the grader reaches them through the
            # sandbox's root as /proc shows it (ZeroMQ retries until the kernel has bound them).
            self.ip = f"/proc/{pid}/root{INSIDE_RUN}/kernel"

    def _child_pid(self, timeout: float = 60.0) -> int:
        """The sandbox's first process, as bwrap reports it on ``--info-fd``."""
        data = b""
        try:
            while True:
                ready, _, _ = select.select([self._info_r], [], [], timeout)
                if not ready:
                    raise SandboxUnavailable(f"bwrap reported no sandbox within {timeout:g} s")
                chunk = os.read(self._info_r, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self._info_r)
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            raise SandboxUnavailable(f"bwrap could not start the kernel's sandbox (it reported {data[:200]!r})") from None

    def exit_reason(self) -> str:
        """Why the kernel stopped, from its exit status (for the feedback and the grading log)."""
        process = getattr(self.provisioner, "process", None) if self.provisioner is not None else None
        code = process.poll() if process is not None else None
        return _exit_reason(code, self)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        runtime = getattr(self, "_runtime", None)
        if runtime is not None:
            shutil.rmtree(runtime, ignore_errors=True)

    # AsyncKernelManager binds its public names to the base class's coroutines: nbclient calls
    # cleanup_resources() on a kernel that died, which must remove the runtime folder too.
    cleanup_resources = _async_cleanup_resources


@functools.lru_cache(maxsize=None)
def edition_labkit() -> Path:
    """The student edition's labkit (graded regions stubbed), built once per process in a temporary
    folder that the kernel's uid can read; removed when the process ends."""
    import atexit

    from . import student
    from .nbgrading import ROOT

    folder = Path(tempfile.mkdtemp(prefix="mlsec-edition-labkit-"))
    atexit.register(shutil.rmtree, folder, True)
    dest = folder / "labkit"
    student.write_stubbed_labkit(ROOT, folder)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return dest


class SandboxExecute(Execute):
    """nbgrader's ``Execute``, with the output of a hand-in capped and a dead kernel scored cell by cell.

    * Output: past ``max_cell_output_bytes`` in a cell, or ``max_notebook_output_bytes`` in the
      notebook, outputs are dropped and one line says so (what the kernel printed is counted in
      bytes, as its messages carry it).
    * A kernel that dies (a limit, a crash) fails the cell it was running with a
      :class:`SandboxLimitError` that says why, and every later code cell with "not run"; the
      notebook is still scored, so the tests that passed before keep their points.
    """

    max_cell_output_bytes = Integer(16 * MiB, help="bytes of output kept per cell").tag(config=True)
    max_notebook_output_bytes = Integer(64 * MiB, help="bytes of output kept per notebook").tag(config=True)
    check_call_timeout = Float(120.0, help="seconds one call of a hidden check into the kernel may take").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        from nbclient import NotebookClient

        self._out_bytes: dict[int, int] = {}
        self._cut: set[int] = set()
        self._dead: str | None = None
        self._checks = self._load_checks(resources or {}, nb)
        # nbconvert's ExecutePreprocessor.preprocess, with the hidden checks run before the kernel stops
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        with self.setup_kernel():
            assert self.kc
            info_msg = self.wait_for_reply(self.kc.kernel_info())
            assert info_msg
            self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
            for index, cell in enumerate(self.nb.cells):
                self.preprocess_cell(cell, resources, index)
            if self._checks:
                self._run_checks()
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _load_checks(self, resources: dict, nb) -> list:
        """The lab's hidden checks (``solutions/<lab>/hidden_checks.py``), or [] when it has none."""
        lab = resources.get("nbgrader", {}).get("assignment")
        if not lab:
            return []
        cfg = self.config.get("CourseDirectory", {})
        root = Path(cfg.get("root") or os.getcwd())
        path = root / cfg.get("source_directory", "source") / lab / checks.CHECKS_FILE
        if not path.is_file():
            return []
        found = checks.load_checks(path)
        ids = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells}
        unknown = sorted({c.cell for c in found} - ids)
        if unknown:
            raise ValueError(f"{path}: hidden checks for grade cells the notebook does not have: {unknown}")
        return found

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._checks and isinstance(km, SandboxKernelManager):
            km.labkit_source = str(edition_labkit())  # no reference, no hidden check, in the student's kernel
        return km

    def _run_checks(self) -> None:
        """Run every hidden check against the kernel; a failure is an error in its grade cell."""
        from jupyter_core.utils import run_sync

        cells = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c for c in self.nb.cells}
        async def wait(coro):
            return await coro

        kernel = checks.Kernel(self.kc, run_sync(wait), timeout=self.check_call_timeout)
        by_cell: dict[str, list] = {}
        for chk in self._checks:
            by_cell.setdefault(chk.cell, []).append(chk)
        for grade_id, group in by_cell.items():
            cell = cells[grade_id]
            failed_before = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            lines, errors = [], []
            for chk in group:
                if failed_before:
                    lines.append(f"[not run] {chk.doc} (a visible test of this cell failed)")
                    continue
                if self._dead is not None:
                    message = f"{chk.doc}: not run: {self._dead}"
                else:
                    message = checks.run_check(chk, kernel)
                self.log.info("hidden check %s/%s: %s", grade_id, chk.name, "passed" if message is None else "failed")
                lines.append(f"[passed] {chk.doc}" if message is None else f"[failed] {chk.doc}")
                if message is not None:
                    errors.append(message)
            cell.outputs = list(cell.get("outputs", [])) + [NotebookNode(
                output_type="stream", name="stdout", text="Hidden checks, run by the grader:\n" + "\n".join(lines) + "\n")]
            if errors:
                text = "; ".join(errors)[:4000]
                cell.outputs.append(NotebookNode(output_type="error", ename="HiddenCheckFailed", evalue=text,
                                                 traceback=[f"HiddenCheckFailed: {text}"]))

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        cell_total = self._out_bytes.get(cell_index, 0) + size
        notebook_total = sum(self._out_bytes.values()) + size
        if cell_total > self.max_cell_output_bytes or notebook_total > self.max_notebook_output_bytes:
            if cell_index not in self._cut:
                self._cut.add(cell_index)
                which = ("this cell's", self.max_cell_output_bytes) if cell_total > self.max_cell_output_bytes \
                    else ("the notebook's", self.max_notebook_output_bytes)
                note = (f"[output cut: {which[0]} output passed the grader's limit of {which[1]:,} bytes "
                        f"(c.SandboxExecute); the rest of it is not kept]\n")
                outs.append(NotebookNode(output_type="stream", name="stderr", text=note))
                name = self.nb.cells[cell_index].get("metadata", {}).get("nbgrader", {}).get("grade_id") \
                    or f"number {cell_index}"
                self.log.warning("SandboxLimitError: cell %s: %s output passed %s bytes and was cut",
                                 name, which[0].replace("'s", ""), f"{which[1]:,}")
            return None
        self._out_bytes[cell_index] = cell_total
        return super().output(outs, msg, display_id, cell_index)

    def preprocess_cell(self, cell, resources, index):
        from nbclient.exceptions import DeadKernelError

        if cell.cell_type != "code" or not cell.source.strip():
            return super().preprocess_cell(cell, resources, index)
        if self._dead is not None:
            cell.outputs = [self._error(f"not run: {self._dead} in an earlier cell")]
            return cell, self.resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            km = self.km
            self._dead = km.exit_reason() if isinstance(km, SandboxKernelManager) else "the kernel died"
            name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") or f"number {index}"
            self.log.error("SandboxLimitError: cell %s: %s", name, self._dead)
            cell.outputs = list(cell.get("outputs", [])) + [self._error(f"{self._dead} while running this cell")]
            return cell, self.resources

    @staticmethod
    def _error(text: str) -> NotebookNode:
        return NotebookNode(output_type="error", ename="SandboxLimitError", evalue=text,
                            traceback=[f"SandboxLimitError: {text}"])
