"""What counts as a hand-in: the one gate every student file passes before it is graded or collected.

Hand-ins are hostile. Wherever one enters (``grading/submitted/`` read by ``mlsec-grade``, an LMS
download imported by ``mlsec-collect``, nbgrader's exchange collected by ``nbgrader collect``), the
functions here decide what is taken, and say why everything else is refused:

* **Only the notebook.** A hand-in of lab ``L`` is exactly one *regular file* named ``L.ipynb``.
  It is checked with ``lstat`` and opened with ``O_NOFOLLOW | O_NONBLOCK`` relative to a folder
  that was itself opened with ``O_NOFOLLOW`` (so neither the file nor a folder on its way can be a
  symbolic link), then ``fstat`` must show the same regular file: no link, no device, FIFO or socket.
  It must have exactly one hard link (``st_nlink == 1``): a second name for a file is how a hand-in
  could point at ``solutions/`` on the same file system, and no honest copy (an upload, ``cp``,
  nbgrader's own copies) makes one.
* **Under a size cap**: ``c.Intake.max_notebook_bytes`` in ``nbgrader_config.py`` (default
  :data:`MAX_NOTEBOOK_BYTES`, 32 MiB); the file is read in chunks and never past the cap.
* **Nothing else.** Files beside the notebook (a helper module, a ``labkit/`` folder, data) are
  neither graded nor copied; they are listed. The one exception is nbgrader's own bookkeeping,
  :data:`METADATA_FILES` (``timestamp.txt``, ``submission_secret.txt``: plain text of a few bytes
  that nbgrader parses for late penalties and the exchange's feedback), taken under the same rules
  with a 4 KiB cap.
* **Archives** (:func:`extract_zip`): only the entries of the download itself are read, never an
  archive inside it (nested archives are refused, not unpacked). An entry is skipped, and the rest
  of the download still read, when its name is unsafe (absolute, a drive letter, ``..``, a
  backslash, a control character), when it is a symbolic link, a device or other special entry,
  encrypted, not a notebook, over the cap, or compressed more than :data:`MAX_RATIO` to 1 (a zip
  bomb); a download stops at :data:`MAX_ENTRIES` entries and :data:`MAX_TOTAL_BYTES` extracted.
* **Exchange hand-ins** (:func:`read_exchange_handin`): the hand-in folder and everything in it
  must be owned by the student it claims to be (the uid of the system user named like the student,
  ``pwd.getpwnam``); when no system user has that name (one shared account, container setups where
  every user has the same uid), the owner must be the uid running ``collect`` (the instructor), and
  the owner check then proves nothing more than that setup allows. A link, a device or a file of
  another owner anywhere in the hand-in refuses all of it.

The module only uses the standard library; nbgrader's classes that apply it live in
:mod:`coursetools.lms` (zip_collect's extractor and collector) and :mod:`coursetools.exchange`
(the exchange's collect).
"""
from __future__ import annotations

import dataclasses
import errno
import os
import pwd
import re
import stat
import unicodedata
import zipfile
from pathlib import Path

__all__ = ["MAX_NOTEBOOK_BYTES", "MAX_METADATA_BYTES", "METADATA_FILES", "MAX_ENTRIES", "MAX_TOTAL_BYTES",
           "MAX_RATIO", "ARCHIVE_SUFFIXES", "Refused", "Handin", "Budget", "max_notebook_bytes", "describe",
           "check_stat", "read_file_at", "open_dir_at", "read_handin", "scan_submitted", "unsafe_name",
           "member_problem", "extract_zip", "copy_regular_files", "expected_owner", "read_exchange_handin",
           "write_files"]

MAX_NOTEBOOK_BYTES = 32 * 2**20     # c.Intake.max_notebook_bytes in nbgrader_config.py changes it
MAX_METADATA_BYTES = 4096
METADATA_FILES = ("timestamp.txt", "submission_secret.txt")   # nbgrader's own, shipped with the notebook
MAX_ENTRIES = 100_000               # entries read from one LMS download, all archives together
MAX_TOTAL_BYTES = 8 * 2**30         # bytes extracted from one LMS download
MAX_RATIO = 200                     # uncompressed / compressed size of an entry over 1 MiB
ARCHIVE_SUFFIXES = (".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".zst")
_SKIP_QUIETLY = {".ipynb_checkpoints", "__pycache__", ".DS_Store", "__MACOSX"}
_CHUNK = 2**20


class Refused(ValueError):
    """A file or a hand-in that is not taken; the message says why, in words for the report."""


@dataclasses.dataclass(frozen=True)
class Handin:
    """What intake takes of one hand-in.

    ``files``: ``{name: bytes}``, the notebook (and nbgrader's metadata files), empty when refused;
    ``refused``: why the hand-in as a whole is refused, or None; ``ignored``: the other files that
    were there, with why each was not taken.
    """
    files: dict[str, bytes]
    refused: str | None = None
    ignored: tuple[str, ...] = ()


@dataclasses.dataclass
class Budget:
    """What one LMS download may still extract: entries read and bytes written."""
    entries: int = MAX_ENTRIES
    bytes: int = MAX_TOTAL_BYTES


def max_notebook_bytes(config=None) -> int:
    """The notebook size cap: ``c.Intake.max_notebook_bytes`` of ``config`` (a traitlets Config,
    e.g. ``nbgrading.course_config(course)`` or an nbgrader app's ``self.config``), else
    :data:`MAX_NOTEBOOK_BYTES`.

    Raises:
        ValueError: the setting is not a positive whole number of bytes.
    """
    value = None
    if config is not None:
        try:
            value = config.Intake.get("max_notebook_bytes")
        except AttributeError:
            value = None
    if value is None:
        return MAX_NOTEBOOK_BYTES
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"c.Intake.max_notebook_bytes: expected a positive number of bytes, got {value!r}")
    return value


def describe(mode: int) -> str:
    """What kind of file ``mode`` (an ``st_mode``) is, in words."""
    for test, words in ((stat.S_ISLNK, "a symlink"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return words
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


def check_stat(st: os.stat_result, name: str, *, max_bytes: int) -> str | None:
    """Why a file whose ``lstat`` is ``st`` is not taken as ``name``, or None when it is."""
    if not stat.S_ISREG(st.st_mode):
        return f"{name} is {describe(st.st_mode)}"
    if st.st_nlink != 1:
        return f"{name} has {st.st_nlink} hard links (a hand-in must be a file of its own)"
    if st.st_size > max_bytes:
        return f"{name} is {_size(st.st_size)}, over the cap of {_size(max_bytes)} (c.Intake.max_notebook_bytes)"
    return None


def open_dir_at(dir_fd: int | None, name: str | os.PathLike) -> int:
    """Open the folder ``name`` (relative to ``dir_fd``) without following a link; the fd.

    Raises:
        Refused: ``name`` is a link or not a folder.
    """
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        base = os.path.basename(os.fspath(name)) or os.fspath(name)
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                what = describe(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                what = "not a folder"
            raise Refused(f"{base}/ is {what}, not a folder") from None
        raise Refused(f"{base}/ cannot be opened ({err.strerror})") from None


def _chunks_at(dir_fd: int | None, name: str, *, max_bytes: int, owner: int | None = None,
               label: str | None = None):
    """The chunks of the regular file ``name`` in the folder ``dir_fd``, read as intake allows
    (a generator; the checks run, and may raise :class:`Refused`, before the first chunk)."""
    label = label or name
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Refused(f"no {label}") from None
    except OSError as err:
        raise Refused(f"{label} cannot be read ({err.strerror})") from None
    if (why := check_stat(st, label, max_bytes=max_bytes)) is not None:
        raise Refused(why)
    if owner is not None and st.st_uid != owner:
        raise Refused(f"{label} is owned by {_user(st.st_uid)}, not {_user(owner)}")
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise Refused(f"{label} is a symlink") from None
        raise Refused(f"{label} cannot be opened ({err.strerror})") from None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise Refused(f"{label} changed while it was read")
        if (why := check_stat(now, label, max_bytes=max_bytes)) is not None:
            raise Refused(why)
        if owner is not None and now.st_uid != owner:
            raise Refused(f"{label} is owned by {_user(now.st_uid)}, not {_user(owner)}")
    except BaseException:
        os.close(fd)
        raise
    return _FdChunks(fd, max_bytes, label)


class _FdChunks:
    """The chunks of an open file, at most ``max_bytes`` in all; closes the fd when done or closed."""

    def __init__(self, fd: int, max_bytes: int, label: str):
        self.fd, self.max_bytes, self.label, self.total = fd, max_bytes, label, 0

    def __iter__(self):
        try:
            while True:
                chunk = os.read(self.fd, min(_CHUNK, self.max_bytes + 1 - self.total))
                if not chunk:
                    return
                self.total += len(chunk)
                if self.total > self.max_bytes:
                    raise Refused(f"{self.label} grew over the cap of {_size(self.max_bytes)} while it was read")
                yield chunk
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_file_at(dir_fd: int | None, name: str, *, max_bytes: int, owner: int | None = None,
                 label: str | None = None) -> bytes:
    """The bytes of the regular file ``name`` in the folder ``dir_fd``, read as intake allows.

    ``lstat`` first (nothing is opened that is not a regular file of one link under the cap),
    then ``O_NOFOLLOW | O_NONBLOCK``, then ``fstat`` must show the same file; never more than
    ``max_bytes`` are read. ``owner``: the uid the file must belong to. ``label``: the name in
    messages (default ``name``).

    Raises:
        Refused: with the reason.
    """
    return b"".join(_chunks_at(dir_fd, name, max_bytes=max_bytes, owner=owner, label=label))


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _take_folder(dir_fd: int, lab: str, *, max_bytes: int, owner: int | None = None) -> Handin:
    """Take ``<lab>.ipynb`` and nbgrader's metadata files from an open hand-in folder."""
    notebook = f"{lab}.ipynb"
    names = sorted(os.listdir(dir_fd))
    ignored: list[str] = []
    files: dict[str, bytes] = {}
    for name in names:
        if name == notebook or name in _SKIP_QUIETLY:
            continue
        if name in METADATA_FILES:
            try:
                files[name] = read_file_at(dir_fd, name, max_bytes=MAX_METADATA_BYTES, owner=owner)
            except Refused as why:
                ignored.append(f"{name}: not taken: {why}")
            continue
        try:
            kind = describe(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            kind = "unreadable"
        ignored.append(f"{name}: not taken ({kind}; only {notebook} is graded)")
    if notebook not in names:
        others = [n for n in names if n.endswith(".ipynb")]
        found = f" (found {', '.join(others[:5])})" if others else ""
        return Handin({}, f"no {notebook}{found}", tuple(ignored))
    try:
        files[notebook] = read_file_at(dir_fd, notebook, max_bytes=max_bytes, owner=owner)
    except Refused as why:
        return Handin({}, str(why), tuple(ignored))
    return Handin(files, None, tuple(ignored))


def read_handin(submitted: Path | str, student: str, lab: str, *, max_bytes: int = MAX_NOTEBOOK_BYTES) -> Handin:
    """What ``mlsec-grade`` takes of ``<submitted>/<student>/<lab>/``: the notebook ``<lab>.ipynb``
    (and nbgrader's metadata files), read without following any link below ``submitted``."""
    try:
        top = os.open(submitted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the course's own folder
    except OSError as err:
        return Handin({}, f"{submitted} cannot be opened ({err.strerror})")
    fds = [top]
    try:
        fds.append(open_dir_at(top, student))
        fds.append(open_dir_at(fds[-1], lab))
        return _take_folder(fds[-1], lab, max_bytes=max_bytes)
    except Refused as why:
        return Handin({}, str(why))
    finally:
        for fd in reversed(fds):
            os.close(fd)


def scan_submitted(submitted: Path | str) -> tuple[dict[str, list[str]], list[str]]:
    """The hand-ins under ``submitted`` (``grading/submitted/``), found without following links.

    Returns:
        ``{student: [lab, ...]}`` for every ``<student>/<lab>/`` that holds a ``.ipynb`` entry of
        any kind, or that is itself a link (so that :func:`read_handin` refuses it with a row in the
        report), and notes on the entries that are not hand-ins (a student folder that is a link).
    """
    submitted = Path(submitted)
    found: dict[str, list[str]] = {}
    notes: list[str] = []
    try:
        students = sorted(os.scandir(submitted), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return found, notes
    for entry in students:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink():
            notes.append(f"{entry.name}/: refused: the student folder is a symlink")
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        labs = []
        for lab in sorted(os.scandir(entry.path), key=lambda e: e.name):
            if lab.name.startswith("."):
                continue
            if lab.is_symlink():
                labs.append(lab.name)  # read_handin refuses it: the row says why
            elif lab.is_dir(follow_symlinks=False):
                try:
                    if any(n.endswith(".ipynb") for n in os.listdir(lab.path)):
                        labs.append(lab.name)
                except OSError:
                    labs.append(lab.name)
        if labs:
            found[entry.name] = labs
    return found, notes


# ----------------------------------------------------------------------------------- archives
def unsafe_name(name: str) -> str | None:
    """Why an archive entry's name may not be written below the extraction folder, or None."""
    if not name or name in (".", "/"):
        return "an empty name"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "a control character in its name"
    if "\\" in name:
        return "a backslash in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in name.split("/"):
        return "a path that leaves the folder (..)"
    return None


def member_problem(info: zipfile.ZipInfo, *, max_bytes: int) -> str | None:
    """Why the zip entry ``info`` is not extracted, or None (a notebook that may be)."""
    if (why := unsafe_name(info.filename)) is not None:
        return why
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return f"{describe(mode)} entry"
    if info.flag_bits & 0x1:
        return "an encrypted entry"
    base = info.filename.rstrip("/").rsplit("/", 1)[-1]
    if base.lower().endswith(ARCHIVE_SUFFIXES):
        return "an archive inside the download: not unpacked"
    if not base.endswith(".ipynb"):
        return "not a notebook (only .ipynb files are collected)"
    if info.file_size > max_bytes:
        return f"{_size(info.file_size)}, over the cap of {_size(max_bytes)} (c.Intake.max_notebook_bytes)"
    if info.file_size > 2**20 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return f"compressed {info.file_size // max(info.compress_size, 1)} to 1 (a zip bomb?)"
    return None


def _makedirs_at(root_fd: int, parts: list[str]) -> int:
    """Create (or enter) the folders ``parts`` below ``root_fd`` without following links; the fd."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            if part in ("", "."):
                continue
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            nxt = open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _write_new(dir_fd: int, name: str, chunks, *, max_bytes: int) -> int:
    """Write a new file ``name`` (never replacing one, never through a link); its size.

    Raises:
        Refused: it exists already, or the data pass ``max_bytes`` (the partial file is removed).
    """
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        _close(chunks)
        raise Refused("a second entry of the same name") from None
    except BaseException:
        _close(chunks)
        raise
    total = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                total += len(chunk)
                if total > max_bytes:
                    raise Refused(f"more than the cap of {_size(max_bytes)} (c.Intake.max_notebook_bytes)")
                out.write(chunk)
    except BaseException:
        _close(chunks)
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    return total


def _close(chunks) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _zip_chunks(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int):
    with zf.open(info) as fh:
        while True:
            chunk = fh.read(min(_CHUNK, limit + 1))
            if not chunk:
                return
            yield chunk


def extract_zip(archive: Path | str, dest: Path | str, *, max_bytes: int = MAX_NOTEBOOK_BYTES,
                budget: Budget | None = None, label: str | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Extract the notebooks of the zip ``archive`` into the existing folder ``dest``, safely.

    Only regular-file entries named ``*.ipynb``, with a safe relative name, under the cap and not
    a zip bomb are written, each as a new file below ``dest`` (folders are made, links never
    followed). Archives inside are not unpacked. Every other entry is skipped and reported; one
    bad entry never stops the others.

    Returns:
        (the names written, relative to ``dest``; ``(label/entry, reason)`` for each entry skipped)
    """
    budget = budget if budget is not None else Budget()
    label = label or os.path.basename(os.fspath(archive))
    written: list[str] = []
    refused: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        return written, [(label, f"not a readable zip file ({err})")]
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        with zf:
            infos = zf.infolist()
            for n, info in enumerate(infos):
                shown = f"{label}/{_printable(info.filename)}"
                if budget.entries <= 0:
                    refused.append((f"{label}/...", f"{len(infos) - n} more entries not read: the download "
                                    f"passed {MAX_ENTRIES} entries"))
                    break
                budget.entries -= 1
                if info.is_dir() and unsafe_name(info.filename) is None:
                    continue  # folders are made for the files in them
                if (why := member_problem(info, max_bytes=max_bytes)) is not None:
                    refused.append((shown, why))
                    continue
                if info.file_size > budget.bytes:
                    refused.append((shown, f"the download passed {_size(MAX_TOTAL_BYTES)} extracted"))
                    continue
                parts = [p for p in info.filename.split("/") if p not in ("", ".")]
                try:
                    fd = _makedirs_at(root, parts[:-1])
                except (Refused, OSError) as why:
                    refused.append((shown, f"its folder cannot be made: {why}"))
                    continue
                try:
                    limit = min(max_bytes, info.file_size, budget.bytes)
                    budget.bytes -= _write_new(fd, parts[-1], _zip_chunks(zf, info, limit), max_bytes=limit)
                    written.append("/".join(parts))
                except Refused as why:
                    refused.append((shown, str(why)))
                except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
                    refused.append((shown, f"cannot be extracted ({type(err).__name__}: {err})"))
                finally:
                    os.close(fd)
    finally:
        os.close(root)
    return written, refused


def _printable(name: str) -> str:
    return "".join("?" if unicodedata.category(ch) == "Cc" else ch for ch in name)


def copy_regular_files(src: Path | str, dest: Path | str, *, keep=lambda name: True,
                       max_bytes: int | None = None) -> tuple[list[str], list[tuple[str, str]]]:
    """Copy the regular files below the folder ``src`` into the new folder ``dest``, never
    following a link: a link, a device, a FIFO, a socket, a file of several hard links, one over
    ``max_bytes`` or one that ``keep(name)`` rejects is skipped and reported.

    Returns:
        (the relative paths copied, ``(relative path, reason)`` for each entry skipped)
    """
    copied: list[str] = []
    refused: list[tuple[str, str]] = []
    cap = max_bytes if max_bytes is not None else 2**62
    os.makedirs(dest)

    def walk(src_fd: int, dest_fd: int, prefix: str) -> None:
        for name in sorted(os.listdir(src_fd)):
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=src_fd, follow_symlinks=False)
            except OSError as err:
                refused.append((rel, f"cannot be read ({err.strerror})"))
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = open_dir_at(src_fd, name)
                except Refused as why:
                    refused.append((rel, str(why)))
                    continue
                try:
                    os.mkdir(name, 0o755, dir_fd=dest_fd)
                    out = open_dir_at(dest_fd, name)
                    try:
                        walk(sub, out, rel + "/")
                    finally:
                        os.close(out)
                finally:
                    os.close(sub)
                continue
            if not keep(name) and stat.S_ISREG(st.st_mode):
                refused.append((rel, "not a notebook (only .ipynb files are collected)"))
                continue
            try:
                _write_new(dest_fd, name, _chunks_at(src_fd, name, max_bytes=cap, label=rel), max_bytes=cap)
                copied.append(rel)
            except Refused as why:
                refused.append((rel, str(why)))

    src_fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dest_fd = open_dir_at(None, dest)
        try:
            walk(src_fd, dest_fd, "")
        finally:
            os.close(dest_fd)
    finally:
        os.close(src_fd)
    return copied, refused


# ----------------------------------------------------------------------------------- exchange
def expected_owner(student: str, collector_uid: int) -> tuple[int, str]:
    """The uid that must own an exchange hand-in of ``student``, and who that is in words.

    The system user named ``student`` when there is one; else ``collector_uid`` (the instructor
    running collect: on a machine without a user per student nobody else can be told apart)."""
    try:
        uid = pwd.getpwnam(student).pw_uid
        return uid, f"user {student} (uid {uid})"
    except KeyError:
        return collector_uid, (f"the instructor running collect (uid {collector_uid}), as {student!r} "
                               "is no user of this machine")


_MAX_HANDIN_ENTRIES = 10_000


def read_exchange_handin(folder: Path | str, student: str, lab: str, *, collector_uid: int,
                         max_bytes: int = MAX_NOTEBOOK_BYTES, check_owner: bool = True) -> Handin:
    """What ``nbgrader collect`` takes of the exchange hand-in ``folder`` (``inbound/<student>+<lab>+...``).

    The folder and every entry in it (recursively) must be a real folder or a regular file of one
    hard link, owned by :func:`expected_owner` (unless ``check_owner`` is False); otherwise the
    whole hand-in is refused. Of what passes, the notebook ``<lab>.ipynb`` (required, under the
    cap) and nbgrader's metadata files are taken; other files are listed as ignored.
    """
    name = os.path.basename(os.fspath(folder))
    owner, who = expected_owner(student, collector_uid)
    try:
        st = os.stat(folder, follow_symlinks=False)
    except OSError as err:
        return Handin({}, f"cannot be read ({err.strerror})")
    if not stat.S_ISDIR(st.st_mode):
        return Handin({}, f"is {describe(st.st_mode)}, not a folder")
    if check_owner and st.st_uid != owner:
        return Handin({}, f"claims to be by {student} but is owned by {_user(st.st_uid)}, not {who}")
    try:
        fd = open_dir_at(None, folder)
    except Refused as why:
        return Handin({}, str(why))
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return Handin({}, "changed while it was read")
        count = [0]

        def vet(dir_fd: int, prefix: str) -> str | None:
            for entry in sorted(os.listdir(dir_fd)):
                count[0] += 1
                if count[0] > _MAX_HANDIN_ENTRIES:
                    return f"more than {_MAX_HANDIN_ENTRIES} files"
                rel = prefix + entry
                try:
                    est = os.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
                except OSError as err:
                    return f"{rel} cannot be read ({err.strerror})"
                if check_owner and est.st_uid != owner:
                    return f"{rel} is owned by {_user(est.st_uid)}, not {who}"
                if stat.S_ISDIR(est.st_mode):
                    try:
                        sub = open_dir_at(dir_fd, entry)
                    except Refused as why:
                        return str(why)
                    try:
                        if (why := vet(sub, rel + "/")) is not None:
                            return why
                    finally:
                        os.close(sub)
                elif not stat.S_ISREG(est.st_mode):
                    return f"{rel} is {describe(est.st_mode)}"
                elif est.st_nlink != 1:
                    return f"{rel} has {est.st_nlink} hard links"
            return None

        if (why := vet(fd, "")) is not None:
            return Handin({}, why)
        return _take_folder(fd, lab, max_bytes=max_bytes, owner=owner if check_owner else None)
    finally:
        os.close(fd)


def write_files(dest: Path | str, files: dict[str, bytes]) -> None:
    """Write ``files`` (plain names) into the folder ``dest``, made if missing, as new files."""
    os.makedirs(dest, exist_ok=True)
    fd = open_dir_at(None, dest)
    try:
        for name, data in files.items():
            if "/" in name or name in ("", ".", ".."):
                raise ValueError(f"expected a plain file name, got {name!r}")
            _write_new(fd, name, [data], max_bytes=len(data))
    finally:
        os.close(fd)
