"""nbgrader's exchange collect, for hostile hand-ins (``c.ExchangeFactory.collect`` in nbgrader_config.py).

nbgrader's exchange is a shared folder: ``nbgrader submit`` copies a student's assignment folder to
``<exchange>/<course>/inbound/<student>+<lab>+<timestamp>+<random>``, owned by the user who ran it,
and the instructor's ``nbgrader collect`` (formgrader's Collect button) copies the newest one per
student into ``grading/submitted/<student>/<lab>/``. Who a hand-in is from is only its folder's
name, which any student writes (``nbgrader submit --student=alice`` is allowed), and nbgrader's
default collect follows links (``copytree``) and only *warns* when the folder's owner is not the
student. :class:`OwnerCheckedCollect` keeps nbgrader's collect (newest hand-in, ``--update``,
``--before-duedate``) and applies :func:`coursetools.intake.read_exchange_handin` to every hand-in
before the newest is chosen, so a forged folder cannot hide a student's own:

* The hand-in folder and everything in it must be owned by the student's uid: the system user of
  the student's name (``pwd.getpwnam``, as on a JupyterHub with a user per student). When the
  machine has no such user, only the uid running collect (the instructor) is accepted: on a
  one-account course or a hub whose users all share one uid, ownership cannot tell students apart,
  and the exchange proves nothing more. ``c.ExchangeCollect.check_owner = False`` (nbgrader's own
  switch) turns the owner check off.
* A symlink, a device, a FIFO, a socket or a file with a second hard link anywhere in it, a folder
  name that is no valid student id, an unreadable timestamp or a notebook over the cap
  (``c.Intake.max_notebook_bytes``) refuses the hand-in.
* Of a hand-in that passes, only ``<lab>.ipynb`` and nbgrader's ``timestamp.txt`` and
  ``submission_secret.txt`` are copied, from the bytes that were checked; other files are listed.

Each refusal is logged as an error (``refused <folder>: <reason>``); the other hand-ins are collected.
"""
from __future__ import annotations

import glob
import os
import re
from collections import defaultdict

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

from . import intake

__all__ = ["OwnerCheckedCollect"]

_STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's ExchangeCollect that takes only hand-ins owned by their student, and only their notebook."""

    def _refuse(self, filename: str, reason: str) -> None:
        self.refused.append((filename, reason))
        self.log.error("refused %s: %s", filename, reason)

    def init_src(self):
        if self.coursedir.course_id == '':
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, 'inbound')
        if not os.path.isdir(self.inbound_path):
            self.fail("Course not found: {}".format(self.inbound_path))
        if not os.access(self.inbound_path, os.R_OK | os.X_OK):
            self.fail("You don't have read permissions for the directory: {}".format(self.inbound_path))
        lab = self.coursedir.assignment_id
        student_id = self.coursedir.student_id if self.coursedir.student_id else '*'
        max_bytes = intake.max_notebook_bytes(self.config)
        collector = os.geteuid()
        self.refused: list[tuple[str, str]] = []
        self._taken: dict[str, dict[str, bytes]] = {}
        records = []
        for path in sorted(glob.glob(os.path.join(glob.escape(self.inbound_path), f"{student_id}+{lab}+*"))):
            filename = os.path.basename(path)
            parts = filename.rsplit('+', 3)
            if len(parts) < 3 or parts[1] != lab:
                self._refuse(filename, f"not a hand-in folder name (<student>+{lab}+<timestamp>[+<random>])")
                continue
            username = parts[0]
            if not _STUDENT_ID.match(username):
                self._refuse(filename, f"student id {username!r} is not valid (letters, digits, _ . @ -)")
                continue
            try:
                timestamp = parse_utc(parts[2])
            except (ValueError, OverflowError, TypeError) as err:
                self._refuse(filename, f"unreadable timestamp {parts[2]!r} ({err})")
                continue
            handin = intake.read_exchange_handin(path, username, lab, collector_uid=collector,
                                                 max_bytes=max_bytes, check_owner=self.check_owner)
            if handin.refused:
                self._refuse(filename, handin.refused)
                continue
            for note in handin.ignored:
                self.log.warning("%s: %s", filename, note)
            self._taken[filename] = handin.files
            records.append({'username': username, 'filename': filename, 'timestamp': timestamp})
        if self.refused:
            self.log.error("%d hand-in(s) of '%s' refused (not collected); see the lines above",
                           len(self.refused), lab)

        usergroups = defaultdict(list)
        for record in records:
            usergroups[record['username']].append(record)
        from nbgrader.api import Gradebook, MissingEntry

        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(lab).duedate
            except MissingEntry:
                self.duedate = None
        if self.duedate is None or not self.before_duedate:
            self.src_records = [self._sort_by_timestamp(v)[0] for v in usergroups.values()]
        else:
            self.src_records = []
            for v in usergroups.values():
                ordered = self._sort_by_timestamp(v)
                before = [r for r in ordered if r['timestamp'] <= self.duedate]
                self.src_records.append(before[0] if before else ordered[0])

    def copy_files(self):
        # nbgrader's copy_files only warns about the owner, which init_src has checked already
        check_owner = self.check_owner
        self.check_owner = False
        try:
            super().copy_files()
        finally:
            self.check_owner = check_owner

    def do_copy(self, src, dest, log=None):
        """Write the files intake took of the hand-in ``src`` (the bytes that were checked)."""
        intake.write_files(dest, self._taken[os.path.basename(src)])
        if self.coursedir.groupshared:
            for dirname, _, filenames in os.walk(dest):
                os.chmod(dirname, (os.stat(dirname).st_mode | 0o2770) & 0o2777)
                for name in filenames:
                    path = os.path.join(dirname, name)
                    os.chmod(path, (os.stat(path).st_mode | 0o660) & 0o777)
