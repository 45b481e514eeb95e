"""A seccomp filter (hand-built classic BPF, installed through prctl) for the judge's and the candidate's
processes: the kernel state that outlives a check or escapes its limits is denied.

Stdlib only (imported by the bootstrap as a top-level module). Denied with EPERM:
- the kernel keyrings (add_key, request_key, keyctl): a user keyring belongs to the uid and outlives the
  check, so a later check on the same uid could read what an earlier one stored;
- memfd_create: memory held by a memfd is not address space, so RLIMIT_AS does not count it (this machine
  has no cgroup v2 memory controller to count it instead); tmpfs (/tmp, /dev/shm) is size-limited, SysV
  shared memory capped per IPC namespace, and the open-file limit is low;
- inotify and fanotify (which modules a concurrent check imports), io_uring (it bypasses this filter),
  userfaultfd, perf_event_open, bpf, ptrace and process_vm_readv/writev (another process's memory), and
  new namespaces (unshare, setns, clone with a CLONE_NEW* flag: an unprivileged user namespace would
  grant mounts outside the limits);
- clone3 with ENOSYS, because its flags lie behind a pointer the filter cannot read: the C library falls
  back to clone, whose flags are checked.
Any other architecture than the one the filter was built for (e.g. x32 or i386 calls on x86_64) is
refused as a whole.
"""

from __future__ import annotations

import ctypes
import errno
import platform

if __package__:
    from . import syscalls
else:
    import syscalls

PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_ERRNO = 0x00050000
_X32_BIT = 0x40000000
CLONE_NEW_FLAGS = 0x7E020080  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME

# (audit architecture, {call: number}) from the kernel's syscall tables.
ARCHITECTURES = {
    "x86_64": (0xC000003E, {
        "add_key": 248, "request_key": 249, "keyctl": 250, "memfd_create": 319, "inotify_init": 253,
        "inotify_init1": 294, "fanotify_init": 300, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "userfaultfd": 323, "perf_event_open": 298, "bpf": 321, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "unshare": 272, "setns": 308, "clone": 56,
        "clone3": 435,
    }),
    "aarch64": (0xC00000B7, {
        "add_key": 217, "request_key": 218, "keyctl": 219, "memfd_create": 279, "inotify_init1": 26,
        "fanotify_init": 262, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "userfaultfd": 282, "perf_event_open": 241, "bpf": 280, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "unshare": 97, "setns": 268, "clone": 220, "clone3": 435,
    }),
}  # fmt: skip


class _Instruction(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Instruction))]


def instructions(machine: str) -> list[tuple[int, int, int, int]]:
    """The filter for `machine` as (code, jt, jf, k) tuples; KeyError for an unknown architecture."""
    audit_arch, numbers = ARCHITECTURES[machine]
    denied = [number for name, number in numbers.items() if name not in ("clone", "clone3")]
    # (code, jump if true, jump if false, k), jumps given as labels ("allow", "deny", "enosys") or 0.
    program: list[tuple[int, object, object, int]] = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ, 1, 0, audit_arch),
        (_RET, 0, 0, _KILL_PROCESS),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
    ]
    if machine == "x86_64":
        program.append((_JGE, "deny", 0, _X32_BIT))  # the x32 ABI's numbers
    program += [(_JEQ, "deny", 0, number) for number in denied]
    program += [
        (_JEQ, "enosys", 0, numbers["clone3"]),
        (_JEQ, 0, "allow", numbers["clone"]),
        (_LD_W_ABS, 0, 0, 16),  # the low half of args[0] (little-endian): clone's flags
        (_JSET, "deny", "allow", CLONE_NEW_FLAGS),
    ]
    labels = {"allow": len(program), "deny": len(program) + 1, "enosys": len(program) + 2}
    program += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _ERRNO | errno.EPERM), (_RET, 0, 0, _ERRNO | errno.ENOSYS)]

    def offset(index: int, jump: object) -> int:
        return labels[jump] - index - 1 if isinstance(jump, str) else int(jump)

    return [(code, offset(i, jt), offset(i, jf), k) for i, (code, jt, jf, k) in enumerate(program)]


def install() -> None:
    """Install the filter on this thread (inherited by its forks and kept across exec). Needs
    PR_SET_NO_NEW_PRIVS (or CAP_SYS_ADMIN); raises OSError when it cannot be installed."""
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        raise OSError(0, f"seccomp filter: no system call table for architecture {machine!r}")
    program = instructions(machine)
    array = (_Instruction * len(program))(*[_Instruction(*instruction) for instruction in program])
    fprog = _Program(len(program), array)
    syscalls.prctl_pointer(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))
