"""The program's process, from fork to exec: its file descriptors, resource limits and identity.

Stdlib only (imported by the bootstrap as a top-level module). Runs as root in the forked child, before
any of the program's code exists; every step either takes effect or raises.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import signal

if __package__:  # imported by the harness as tasks.sandbox.limits
    from . import seccomp, syscalls
else:  # imported by the bootstrap script, which puts this directory first on sys.path
    import seccomp
    import syscalls

STATUS_FD = 9  # where the bootstrap's status pipe waits, closed on exec; the layout's descriptors lie below
MAX_OPEN_FILES = 64  # RLIMIT_NOFILE: few pipes and sockets, hence little kernel memory outside RLIMIT_AS
PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}


def lowered(which: int, configured: int) -> int:
    """The configured limit, or the inherited one where that is lower: a limit the harness runs under
    (`ulimit -f`, a batch system's cap) also binds its programs, and the hard limit cannot be raised."""
    soft, hard = resource.getrlimit(which)
    return min(value for value in (configured, soft, hard) if value != resource.RLIM_INFINITY)


def program_limits(limits: dict, with_nproc: bool) -> dict[int, tuple[int, int]]:
    """{resource: (soft, hard)} for the program."""
    mb = 1024 * 1024
    result = {
        resource.RLIMIT_AS: lowered(resource.RLIMIT_AS, limits["memory_limit_mb"] * mb),
        resource.RLIMIT_FSIZE: lowered(resource.RLIMIT_FSIZE, limits["max_file_size_mb"] * mb),
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: lowered(resource.RLIMIT_NOFILE, MAX_OPEN_FILES),
    }
    result = {which: (value, value) for which, value in result.items()}
    # CPU: SIGXCPU at the soft limit, SIGKILL one second later for a program that ignores SIGXCPU.
    cpu = lowered(resource.RLIMIT_CPU, limits["cpu_time_limit_s"])
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    result[resource.RLIMIT_CPU] = (
        cpu,
        cpu + 1 if cpu_hard == resource.RLIM_INFINITY else min(cpu + 1, cpu_hard),
    )
    if with_nproc:  # counted per real uid by the kernel: meaningful only with a uid of the program's own
        nproc = lowered(resource.RLIMIT_NPROC, limits["max_processes"])
        result[resource.RLIMIT_NPROC] = (nproc, nproc)
    return result


def _place_fds(layout: dict[int, int], status: int) -> None:
    """Each layout source onto its target descriptor (inherited by the script), the status pipe onto
    STATUS_FD (closed on exec); close the rest; stdin from /dev/null."""
    moved = {target: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, STATUS_FD + 1) for target, fd in layout.items()}
    moved_status = fcntl.fcntl(status, fcntl.F_DUPFD_CLOEXEC, STATUS_FD + 1)
    for target, fd in moved.items():
        os.dup2(fd, target, inheritable=True)
    os.dup2(moved_status, STATUS_FD, inheritable=False)
    for fd in range(3, STATUS_FD):
        if fd not in layout:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or os.getgroups():
        raise OSError(f"the switch to uid {uid} did not take effect")
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise OSError("root privileges could be regained after the switch to the program's uid")


def become_program(plan: dict, role: dict, layout: dict[int, int], parent: int) -> None:
    """In the forked child: set everything up and exec `role["script"]` (the judge or the candidate) in
    `role["workdir"]` as `role["uid"]`. Never returns; raises OSError with a message naming what failed
    (after the status pipe moved to STATUS_FD, plan["fds"]["status"] says so)."""
    os.setsid()  # its own session and process group, apart from the bootstrap's
    _place_fds(layout, plan["fds"]["status"])
    plan["fds"]["status"] = STATUS_FD
    signal.pthread_sigmask(signal.SIG_SETMASK, [])  # exec keeps the signal mask
    os.chdir(role["workdir"])
    uid = role["uid"]
    for which, (soft, hard) in program_limits(plan["limits"], with_nproc=uid is not None).items():
        resource.setrlimit(which, (soft, hard))
    syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries and file capabilities stay inert
    if uid is not None:
        _drop_privileges(uid)
    seccomp.install()  # kept across exec and by every fork
    # After the uid switch, which clears it: die with the init (or, unsandboxed, the bootstrap).
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        raise OSError("the sandbox's watcher died before the program started")
    python = plan["python"]
    env = dict(PROGRAM_ENV, HOME=role["workdir"])
    try:
        os.execve(python, [python, *role["flags"], role["script"]], env)
    except OSError as error:
        if error.errno == errno.EAGAIN:
            raise OSError(
                f"exec of {python} refused (EAGAIN): uid {uid} already runs max_processes="
                f"{plan['limits']['max_processes']} processes (RLIMIT_NPROC); a leftover process of that uid?"
            ) from error
        raise OSError(
            f"cannot execute the interpreter {python} in the sandbox ({error.strerror}); execution.python "
            "must be an interpreter the sandbox can mount read-only, e.g. /usr/bin/python3"
        ) from error
