"""The few Linux system calls the sandbox needs that Python's standard library does not wrap.

Stdlib only: this module is imported by the sandbox bootstrap (as a top-level module, see bootstrap.py) as
well as by the harness (as `tasks.sandbox.syscalls`). Every call raises OSError naming the call and the
errno instead of returning an error code, so that a protection that cannot be applied is never skipped.
"""

from __future__ import annotations

import ctypes
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
SANDBOX_NAMESPACES = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# pivot_root has no glibc wrapper, so it goes through syscall(2) with the architecture's number
# (from the kernel's unistd tables; the generic table is shared by aarch64 and riscv64).
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        libc.unshare.argtypes = [ctypes.c_int]
        libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
        libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        libc.syscall.restype = ctypes.c_long
        _libc = libc
    return _libc


def _check(result: int, call: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{call} failed: {os.strerror(error)}")


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def unshare(flags: int) -> None:
    _check(_lib().unshare(flags), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    result = _lib().mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data))
    _check(result, f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount_detach(target: str) -> None:
    _check(_lib().umount2(_bytes(target), MNT_DETACH), f"umount2({target!r}, MNT_DETACH)")


def pivot_root_here() -> None:
    """pivot_root(".", "."): the current directory becomes the root and the old root is stacked on top of
    it, to be detached with umount_detach(".") (the documented idiom of pivot_root(2))."""
    number = PIVOT_ROOT_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(0, f"pivot_root: syscall number unknown for architecture {platform.machine()!r}")
    _check(_lib().syscall(ctypes.c_long(number), b".", b"."), "pivot_root('.', '.')")


def prctl(option: int, value: int) -> None:
    _check(_lib().prctl(option, value, 0, 0, 0), f"prctl({option}, {value})")


def sethostname(name: str) -> None:
    encoded = name.encode()
    _check(_lib().sethostname(encoded, len(encoded)), f"sethostname({name!r})")


def prctl_pointer(option: int, value: int, pointer: int) -> None:
    """prctl with a pointer as its third argument (PR_SET_SECCOMP)."""
    _check(_lib().prctl(option, value, pointer, 0, 0), f"prctl({option}, {value}, <pointer>)")
