"""Import an LMS bulk download into grading/submitted/, and export grades and feedback for the LMS.

    .venv/bin/mlsec-collect LAB DOWNLOAD [--pattern REGEX|canvas|moodle|plain] [--course DIR] [--force]
    .venv/bin/mlsec-export [--course DIR] [--out DIR]

**Collect** (`make collect LAB=... ZIP=...`) runs nbgrader's own ``zip_collect``: DOWNLOAD (a zip
or a folder of files as the LMS names them) is copied into grading/lms/<lab>/archive/, extracted,
and each file whose name matches the pattern is copied to grading/submitted/<student>/<lab>/<file>.
Hand-ins are hostile, so only notebooks pass (coursetools/intake.py): from a folder only regular
``.ipynb`` and ``.zip`` files are copied (links, devices and other files are skipped and listed);
:class:`SafeExtractor` replaces nbgrader's extractor and writes only the regular ``.ipynb``
entries of the download's zips with safe names under the size cap (``c.Intake.max_notebook_bytes``),
never unpacks an archive inside them, and skips and lists every other entry (``..``, absolute,
link and device entries, zip bombs) while the rest of the download is still collected.
The pattern is a regular expression with the named groups ``student_id`` and ``file_id``
(nbgrader's ``FileNameCollectorPlugin.named_regexp``), matched against the file's name (and the
folder it sits in); it comes from --pattern, else from ``c.FileNameCollectorPlugin.named_regexp``
in nbgrader_config.py, else the ``canvas`` preset. :class:`LabFileCollector` maps the copies an LMS
numbers (``lab1-1.ipynb``, ``lab1-2.ipynb``) to the lab's notebook name. Files that could not be
mapped (no match, not a notebook of the lab, an invalid student id) are listed, and the exit
status is 1 when there are any. An existing submission is replaced only with --force.

**Export** (`make export`) reads the course gradebook (manual grades from formgrader included) and
writes, beside grading/grades.csv: grading/lms_grades.csv (the student id, one column of points
per lab, the total; 0 where nothing was handed in) and grading/lms_feedback/<student>.zip (the
student's feedback HTML, one folder per lab), ready to upload.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import stat
import sys
import warnings
import zipfile
from pathlib import Path

from nbgrader.plugins import ExtractorPlugin, FileNameCollectorPlugin

from . import intake, nbgrading

__all__ = ["PRESETS", "LabFileCollector", "SafeExtractor", "named_regexp", "collect", "export", "main_collect",
           "main_export"]

# File-name patterns of LMS bulk downloads (matched against the file name, folder included).
PRESETS = {
    # Canvas: doejane_1234_5678_lab1_extraction.ipynb, doejane_LATE_1234_5678_lab1_extraction-1.ipynb
    "canvas": r"(?P<name>[^/_]+)_(?:LATE_)?(?P<student_id>\d+)_\d+_(?P<file_id>[^/]+\.ipynb)",
    # Moodle: "Jane Doe_1234_assignsubmission_file_lab1.ipynb", or that name as a folder
    "moodle": r"(?P<name>[^/_]+)_(?P<student_id>\d+)_assignsubmission_file_/?(?P<file_id>[^/]+\.ipynb)",
    # plain: <student id>_<notebook>.ipynb, e.g. alice_lab1_extraction.ipynb
    "plain": r"(?P<student_id>[A-Za-z0-9][A-Za-z0-9.@-]*)_(?P<file_id>[^/]+\.ipynb)",
}
_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
_NUMBERED = re.compile(r"^(?P<stem>.+?)-\d+(?P<ext>\.ipynb)$")


_REFUSED = "mlsec-intake refused: "  # + JSON {"name", "reason"[, "path"]}: one line of the log per refusal


def _log_refusal(log, name: str, reason: str, path: str | None = None) -> None:
    entry = {"name": name, "reason": reason}
    if path is not None:
        entry["path"] = path
    log.warning(_REFUSED + json.dumps(entry))


class LabFileCollector(FileNameCollectorPlugin):
    """nbgrader's file-name collector, plus: a copy the LMS numbered (``lab-2.ipynb``) is the lab's
    notebook (``lab.ipynb``); a student id that is no valid folder name, and a second file for the
    same student and notebook (which would make zip_collect stop the whole import), are refused and
    reported, the first file kept."""

    def collect(self, submitted_file):
        info = super().collect(submitted_file)
        if info and isinstance(info.get("file_id"), str):
            m = _NUMBERED.match(info["file_id"])
            if m:
                info["file_id"] = m["stem"] + m["ext"]
        if not info or not isinstance(info.get("student_id"), str) or not isinstance(info.get("file_id"), str):
            return info
        name = os.path.basename(submitted_file)
        if not _STUDENT_ID.match(info["student_id"]):
            _log_refusal(self.log, name, f"student id {info['student_id']!r} is not valid (letters, digits, "
                         "_ . @ -); fix the pattern", submitted_file)
            return None
        seen = self.__dict__.setdefault("_mlsec_seen", {})
        key = (info["student_id"], info["file_id"])
        if key in seen:
            _log_refusal(self.log, name, f"a second file for {info['file_id']} of student {info['student_id']} "
                         f"(kept {os.path.basename(seen[key])}; check by hand)", submitted_file)
            return None
        seen[key] = submitted_file
        return info


class SafeExtractor(ExtractorPlugin):
    """zip_collect's extractor for hostile downloads (``--ZipCollectApp.extractor_plugin``).

    Every zip in the archive folder (the download, or the zips of a downloaded folder) is read
    with :func:`coursetools.intake.extract_zip` into ``extracted/<zip name>/``: only regular
    ``.ipynb`` entries with safe names under the cap; archives inside are not unpacked. A notebook
    in the archive folder is copied under the same rules. Whatever is refused is logged, one JSON
    line each, for :func:`collect` to report; the rest of the download is still extracted."""

    def extract(self, archive_path: str, extracted_path: str) -> None:
        max_bytes = intake.max_notebook_bytes(self.config)
        budget = intake.Budget()
        for root, dirs, files in os.walk(archive_path):
            rel_root = os.path.relpath(root, archive_path)
            extract_to = os.path.normpath(os.path.join(extracted_path, rel_root))
            os.makedirs(extract_to, exist_ok=True)
            for name in sorted(dirs):
                if os.path.islink(os.path.join(root, name)):  # os.walk lists them, never enters them
                    _log_refusal(self.log, os.path.normpath(os.path.join(rel_root, name)), "a symlink")
            for name in sorted(files):
                path = os.path.join(root, name)
                rel = os.path.normpath(os.path.join(rel_root, name))
                st = os.stat(path, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    _log_refusal(self.log, rel, f"{intake.describe(st.st_mode)}")
                elif name.endswith(".zip"):
                    dest = os.path.join(extract_to, name[:-len(".zip")] or "_")
                    os.makedirs(dest, exist_ok=True)
                    self.log.info("Extracting from: %s", path)
                    written, refused = intake.extract_zip(path, dest, max_bytes=max_bytes, budget=budget, label=rel)
                    for entry in written:
                        self.log.info("  Extracted: %s", os.path.join(dest, entry))
                    for entry, why in refused:
                        _log_refusal(self.log, entry, why)
                elif name.endswith(".ipynb"):
                    try:
                        data = intake.read_file_at(None, path, max_bytes=max_bytes, label=rel)
                        intake.write_files(extract_to, {name: data})
                    except intake.Refused as why:
                        _log_refusal(self.log, rel, str(why))
                else:
                    _log_refusal(self.log, rel, "not a notebook (only .ipynb files and zips are read)")


def named_regexp(pattern: str) -> str:
    """The ``named_regexp`` for ``pattern`` (a preset name or a regular expression), made to match
    the file name whatever folders precede it.

    Raises:
        ValueError: not a regular expression with the groups ``student_id`` and ``file_id``.
    """
    regexp = PRESETS.get(pattern, pattern)
    try:
        compiled = re.compile(regexp)
    except re.error as err:
        raise ValueError(f"expected a regular expression or one of {sorted(PRESETS)}, got {pattern!r} ({err})") from None
    missing = {"student_id", "file_id"} - set(compiled.groupindex)
    if missing:
        raise ValueError(f"expected a pattern with the named groups (?P<student_id>...) and (?P<file_id>...), "
                         f"got {pattern!r} without {', '.join(sorted(missing))}")
    body = regexp[1:] if regexp.startswith("^") else regexp
    if not body.startswith(".*"):
        body = r"(?:.*/)?" + body  # nbgrader matches the whole path
    return "^" + (body if body.endswith("$") else body + "$")


def collect(course: Path | str, lab: str, download: Path | str, *, pattern: str | None = None,
            force: bool = False) -> tuple[list[Path], list[str]]:
    """Import an LMS download of ``lab`` with ``nbgrader zip_collect``.

    Returns:
        (the submission files written under grading/submitted/, the files that were not mapped
        with the reason)
    Raises:
        ValueError: unknown lab, missing download, or a bad pattern.
    """
    course, download = Path(course).resolve(), Path(download).resolve()
    if not (course / "solutions" / lab / f"{lab}.ipynb").is_file():
        raise ValueError(f"expected a lab of the course (solutions/<lab>/<lab>.ipynb), got {lab!r}; "
                         f"labs: {nbgrading.discover_labs(course)}")
    if not (download.is_dir() or zipfile.is_zipfile(download)):
        raise ValueError(f"expected an LMS download: a zip file or a folder, got {download}")
    if pattern is None:
        configured = nbgrading.course_config(course).FileNameCollectorPlugin.get("named_regexp")
        pattern = configured or "canvas"
    regexp = named_regexp(pattern)
    submitted = nbgrading.course_dir(course, "submitted")
    scratch_rel = Path(nbgrading.course_config(course).CourseDirectory.submitted_directory).parent / "lms"
    work = course / scratch_rel / lab
    shutil.rmtree(work, ignore_errors=True)
    archive = work / "archive"
    problems = []
    if download.is_dir():
        # regular .ipynb and .zip files only, never through a link (zips are read by SafeExtractor)
        _, skipped = intake.copy_regular_files(download, archive, keep=lambda n: n.endswith((".ipynb", ".zip")),
                                               max_bytes=intake.MAX_TOTAL_BYTES)
        problems += [f"{name}: refused: {why}" for name, why in skipped]
    else:
        archive.mkdir(parents=True)
        shutil.copy2(download, archive / (download.name if download.suffix == ".zip" else download.name + ".zip"))
    # Which submissions exist already: zip_collect would replace them only with --force.
    existing = {p for p in submitted.glob(f"*/{lab}/*") if p.is_file()}
    args = ["zip_collect", lab, "--log-level=INFO", "--strict",
            f"--ZipCollectApp.downloaded_directory={scratch_rel}",
            "--ZipCollectApp.collector_plugin=coursetools.lms.LabFileCollector",
            "--ZipCollectApp.extractor_plugin=coursetools.lms.SafeExtractor",
            f"--FileNameCollectorPlugin.named_regexp={regexp}"]
    if force:
        args.append("--force")
    # zip_collect checks file names against the released notebooks: release the lab to a scratch folder.
    nbgrading.run_nbgrader(course, "generate_assignment", lab, "--force",
                           f"--CourseDirectory.release_directory={work / 'release'}", timeout=600)
    proc = nbgrading.run_nbgrader(course, *args, f"--CourseDirectory.release_directory={work / 'release'}",
                                  timeout=600, check=False)
    (work / "zip_collect.log").write_text(proc.stdout or "")
    copied = set(re.findall(r"Copying from: (.+)", proc.stdout or ""))
    refusals = _refusals(proc.stdout or "")
    by_path = {r["path"]: r["reason"] for r in refusals if "path" in r}
    problems += [f"{r['name']}: refused: {r['reason']}" for r in refusals if "path" not in r]
    extracted = work / "extracted"
    for path in sorted(p for p in extracted.rglob("*") if p.is_file()):
        if str(path) not in copied:
            why = f"refused: {by_path[str(path)]}" if str(path) in by_path else _why(path, proc.stdout or "", regexp)
            problems.append(f"{path.relative_to(extracted)}: {why}")
    written = []
    for student_dir in sorted(p for p in submitted.iterdir() if p.is_dir()) if submitted.is_dir() else []:
        for path in sorted((student_dir / lab).glob("*")) if (student_dir / lab).is_dir() else []:
            if path in existing and not force:
                continue
            if not _STUDENT_ID.match(student_dir.name):
                problems.append(f"{path.relative_to(submitted)}: student id {student_dir.name!r} is not valid "
                                "(letters, digits, _ . @ -): mlsec-grade will skip it; fix the pattern")
            written.append(path)
    if proc.returncode != 0:
        problems.append(f"nbgrader zip_collect exited with {proc.returncode}: {nbgrading.log_reason(proc.stdout or '')}")
    return written, problems


def _refusals(log: str) -> list[dict]:
    """The refusals SafeExtractor and LabFileCollector logged, in order."""
    found = []
    for line in log.splitlines():
        if _REFUSED in line:
            try:
                entry = json.loads(line.split(_REFUSED, 1)[1])
            except ValueError:
                continue
            if isinstance(entry, dict) and {"name", "reason"} <= set(entry):
                found.append(entry)
    return found


def _why(path: Path, log: str, regexp: str) -> str:
    name = str(path)
    if re.match(regexp, name) is None:
        return "its name does not match the pattern"
    m = re.match(regexp, name)
    if path.suffix == ".ipynb" and re.search(r"(invalid name|Invalid submission notebook name) '"
                                             + re.escape(Path(m["file_id"]).name), log):
        return f"{m['file_id']!r} is not a notebook of the lab"
    if "already exists" in log or "exists" in log:
        return "a submission exists already (--force replaces it)"
    return "skipped by zip_collect (see grading/lms/<lab>/zip_collect.log)"


def export(course: Path | str, out: Path | str | None = None) -> tuple[Path, Path, list[str]]:
    """Write grading/lms_grades.csv and grading/lms_feedback/<student>.zip from the gradebook.

    Returns:
        (the CSV, the feedback folder, warnings: pending manual grades, missing feedback)
    """
    course = Path(course).resolve()
    grading = nbgrading.course_dir(course, "submitted").parent
    out = Path(out) if out else grading
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with nbgrading._gradebook(course) as gb:
            labs = sorted(a.name for a in gb.assignments)
            students = sorted(s.id for s in gb.students)
            table, pending = [], 0.0
            for student in students:
                row = [student]
                for lab in labs:
                    try:
                        score = nbgrading.read_scores(course, lab, student, gradebook=gb)
                    except KeyError:
                        row.append(0.0)
                        continue
                    row.append(score.score)
                    pending += score.manual_pending
                row.append(sum(row[1:]))
                table.append(row)
    if pending:
        notes.append(f"{pending:g} points of written answers still wait for manual grading (formgrader); "
                     "the export counts them as 0")
    csv_path = nbgrading.write_grades_csv(out / "lms_grades.csv", ("student_id", *labs, "total"), table)
    feedback = nbgrading.course_dir(course, "feedback")
    folder = out / "lms_feedback"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for student in students:
        files = sorted(p for p in (feedback / student).rglob("*") if p.is_file()) if (feedback / student).is_dir() else []
        if not files:
            notes.append(f"{student}: no feedback HTML in {feedback / student}")
            continue
        with zipfile.ZipFile(folder / f"{student}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, path.relative_to(feedback / student).as_posix())
    return csv_path, folder, notes


def main_collect(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Import an LMS bulk download (zip or folder) of one lab into "
                                             "grading/submitted/ with nbgrader zip_collect.")
    ap.add_argument("lab", help="the lab, a folder of solutions/")
    ap.add_argument("download", help="the LMS download: a zip file or a folder")
    ap.add_argument("--pattern", default=None,
                    help=f"file name -> student id: a regular expression with (?P<student_id>...) and "
                         f"(?P<file_id>...), or a preset ({', '.join(PRESETS)}); default: "
                         f"c.FileNameCollectorPlugin.named_regexp of nbgrader_config.py, else canvas")
    ap.add_argument("--course", default=str(nbgrading.ROOT), help="course root (default: this repository)")
    ap.add_argument("--force", action="store_true", help="replace submissions that exist already")
    args = ap.parse_args(argv)
    try:
        written, problems = collect(args.course, args.lab, args.download, pattern=args.pattern, force=args.force)
    except ValueError as err:
        print(f"mlsec-collect: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"collected {path}")
    print(f"{len(written)} submission file(s) collected for {args.lab}")
    if problems:
        print(f"{len(problems)} file(s) not collected (refused, or not mapped to a student):\n  "
              + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def main_export(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export the gradebook as an LMS grade CSV and per-student feedback zips.")
    ap.add_argument("--course", default=str(nbgrading.ROOT), help="course root (default: this repository)")
    ap.add_argument("--out", default=None, help="folder to write to (default: grading/, beside grades.csv)")
    args = ap.parse_args(argv)
    csv_path, folder, notes = export(args.course, args.out)
    with open(csv_path, newline="") as fh:
        n = sum(1 for _ in csv.reader(fh)) - 1
    print(f"wrote {csv_path} ({n} student(s)) and {folder}/<student>.zip")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0
