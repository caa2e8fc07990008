"""The seccomp filter of a grading kernel: a classic-BPF program that bubblewrap loads (``--seccomp FD``).

The sandbox's other layers (no capabilities, a non-root uid, read-only binds) already make most of
these calls fail; the filter removes them from the kernel's reach altogether, so that a bug or a
forgotten capability in one layer does not reopen them. Denied (``EPERM``):

* changing mounts or namespaces: ``mount``, ``umount2``, ``pivot_root``, ``chroot``, the new mount
  API (``fsopen`` ... ``mount_setattr``), ``unshare``, ``setns``, and ``clone`` with any
  ``CLONE_NEW*`` flag (``clone3`` answers ``ENOSYS``, as on an old kernel, so that the C library
  falls back to ``clone``, whose flags a filter can read);
* reaching into other processes or the kernel: ``ptrace``, ``process_vm_readv``/``writev``,
  ``kcmp``, the key ring (``keyctl``, ``add_key``, ``request_key``), ``bpf``, ``perf_event_open``,
  ``userfaultfd``, ``io_uring_*`` (its operations are not seen by seccomp), modules, ``kexec``,
  ``open_by_handle_at``, ``syslog``, ``iopl``/``ioperm``;
* the machine's state: ``reboot``, ``swapon``/``swapoff``, ``acct``, ``quotactl``, the clocks;
* typing into a terminal: ``ioctl(TIOCSTI)`` and ``ioctl(TIOCLINUX)``.

Any other architecture than the one the filter was built for (the x32 ABI, 32-bit calls on a
64-bit kernel) is denied as a whole. The syscall numbers come from the kernel's tables for x86_64
and aarch64; ``tests/test_sandbox.py`` checks them against libseccomp where it is installed.
"""
from __future__ import annotations

import errno
import platform
import struct

__all__ = ["DENIED", "ARCHES", "UnsupportedArch", "filter_program", "machine_arch"]

# syscall name -> number, per architecture (Linux's unistd tables)
_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "kexec_load": 246,
    "kexec_file_load": 320, "open_by_handle_at": 304, "name_to_handle_at": 303, "syslog": 103,
    "lookup_dcookie": 212, "vhangup": 153, "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "settimeofday": 164, "clock_settime": 227, "adjtimex": 159, "clock_adjtime": 305,
    "iopl": 172, "ioperm": 173, "uselib": 134,
    # inspected or answered specially
    "clone": 56, "clone3": 435, "ioctl": 16,
}
_AARCH64 = {
    "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428,
    "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
    "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280, "perf_event_open": 241,
    "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "kexec_load": 104,
    "kexec_file_load": 294, "open_by_handle_at": 265, "name_to_handle_at": 264, "syslog": 116,
    "lookup_dcookie": 18, "vhangup": 58, "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89,
    "quotactl": 60, "settimeofday": 170, "clock_settime": 112, "adjtimex": 171, "clock_adjtime": 266,
    "clone": 220, "clone3": 435, "ioctl": 29,
}
# platform.machine() -> (AUDIT_ARCH_* of <linux/audit.h>, syscall table, first number of another ABI)
ARCHES = {
    "x86_64": (0xC000003E, _X86_64, 0x40000000),  # numbers from 0x40000000 on are the x32 ABI
    "aarch64": (0xC00000B7, _AARCH64, None),
}
_SPECIAL = {"clone", "clone3", "ioctl"}
DENIED = tuple(sorted(set(_X86_64) - _SPECIAL))
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME
CLONE_NAMESPACES = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
TTY_IOCTLS = (0x5412, 0x541C)  # TIOCSTI, TIOCLINUX

# classic BPF (linux/filter.h, linux/seccomp.h)
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
_NR, _ARCH, _ARG0_LO, _ARG1_LO = 0, 4, 16, 24  # offsets in struct seccomp_data (little-endian)


class UnsupportedArch(RuntimeError):
    """No seccomp filter is written for this machine's architecture."""


def machine_arch() -> str:
    arch = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def filter_program(arch: str | None = None) -> bytes:
    """The filter as bubblewrap reads it from ``--seccomp FD``: an array of ``struct sock_filter``.

    Raises:
        UnsupportedArch: ``arch`` (default: this machine's) is not x86_64 or aarch64.
    """
    arch = arch or machine_arch()
    if arch not in ARCHES:
        raise UnsupportedArch(f"no seccomp filter for the architecture {arch!r} (expected one of {sorted(ARCHES)})")
    audit_arch, table, foreign_from = ARCHES[arch]
    # Instructions with symbolic jump targets, resolved below: ("label", name) marks a place.
    prog: list = [(_LD_W_ABS, 0, 0, _ARCH), (_JEQ, 0, "kill", audit_arch), (_LD_W_ABS, 0, 0, _NR)]
    if foreign_from is not None:
        prog.append((_JGE, "eperm", 0, foreign_from))
    for name in sorted(table, key=table.get):
        if name not in _SPECIAL:
            prog.append((_JEQ, "eperm", 0, table[name]))
    prog += [(_JEQ, "enosys", 0, table["clone3"]), (_JEQ, "clone", 0, table["clone"]),
             (_JEQ, "ioctl", 0, table["ioctl"]), (_RET, 0, 0, _RET_ALLOW),
             ("label", "clone"), (_LD_W_ABS, 0, 0, _ARG0_LO), (_JSET, "eperm", 0, CLONE_NAMESPACES),
             (_RET, 0, 0, _RET_ALLOW),
             ("label", "ioctl"), (_LD_W_ABS, 0, 0, _ARG1_LO)]
    prog += [(_JEQ, "eperm", 0, request) for request in TTY_IOCTLS]
    prog += [(_RET, 0, 0, _RET_ALLOW),
             ("label", "eperm"), (_RET, 0, 0, _RET_ERRNO | errno.EPERM),
             ("label", "enosys"), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS),
             ("label", "kill"), (_RET, 0, 0, _RET_KILL_PROCESS)]
    labels, code = {}, []
    for item in prog:
        if item[0] == "label":
            labels[item[1]] = len(code)
        else:
            code.append(item)
    out = bytearray()
    for pc, (op, jt, jf, k) in enumerate(code):
        jt, jf = (labels[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf))
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise AssertionError("seccomp jump out of range")  # the program is too long for 8-bit jumps
        out += struct.pack("=HBBI", op, jt, jf, k & 0xFFFFFFFF)
    return bytes(out)
