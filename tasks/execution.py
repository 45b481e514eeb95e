"""Sandboxed execution of untrusted programs (HumanEval completions).

Each program runs in a fresh `python -I` interpreter started through a small bootstrap (this very file run as
a script, stdlib only), which applies every protection before the program's first instruction:

- its own session, so a wall-clock timeout kills the whole process group;
- Linux namespaces (needs root): a new network namespace (only a downed loopback: no network), a new PID
  namespace whose init is the bootstrap (when the init dies the kernel kills every process left inside, so
  a fork bomb or a daemonized child cannot outlive the sample), and a new mount namespace with fresh, size
  limited tmpfs mounts on /tmp, /var/tmp, /dev/shm and /run/lock (the program's private working directory is /tmp:
  it vanishes with the namespace and nothing written there reaches the machine);
- resource limits: RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_NPROC (processes and threads of the sandbox
  user, counted machine-wide by the kernel, so the limit is set to what that user already runs plus
  `max_processes`), RLIMIT_FSIZE, no core dumps, and no_new_privs (setuid binaries cannot escalate);
- an unprivileged user (default `nobody`): the program cannot delete or change the caller's files;
- a cleaned environment and stdin from /dev/null.

Each requested protection is applied and checked inside the sandbox (the user id, only `lo` visible);
if one cannot be applied the run raises `SandboxUnavailableError` instead of running unprotected.
Turning a protection off is an explicit setting. Programs run concurrently in a thread pool (`workers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

_CLONE_NEWNS, _CLONE_NEWPID, _CLONE_NEWNET = 0x00020000, 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
_PR_SET_NO_NEW_PRIVS = 38
_SETUP_FAILED_EXIT = 125
_KILL_GRACE_S = 10.0  # how long a killed sandbox may take to empty its PID namespace
# World-writable places besides /tmp (found with `find / -xdev -type d -perm -0002`), each hidden behind
# its own private tmpfs so that a program cannot leave files on the machine.
_OTHER_WRITABLE_DIRECTORIES = ("/var/tmp", "/dev/shm", "/run/lock")
_PROGRAM_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
_SIGNAL_REASONS = {
    signal.SIGXCPU: "CPU time limit exceeded (SIGXCPU)",
    signal.SIGKILL: "killed (SIGKILL: CPU hard limit or out of memory)",
    signal.SIGXFSZ: "file size limit exceeded (SIGXFSZ)",
    signal.SIGSEGV: "segmentation fault (SIGSEGV)",
}


class SandboxUnavailableError(RuntimeError):
    """A requested protection cannot be applied on this machine; nothing was run unprotected."""


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one program: status is "passed", "failed" or "timed out"; reason says why it did not pass."""

    status: str
    reason: str
    duration_s: float
    output: str = ""  # the tail of the program's stdout and stderr

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_record(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "duration_s": round(self.duration_s, 4)}


@dataclass(frozen=True)
class SandboxSettings:
    """Limits and protections, read from the task config's `execution` mapping (no defaults here)."""

    timeout_s: float
    cpu_time_limit_s: int
    memory_limit_mb: int
    max_processes: int
    max_file_size_mb: int
    private_tmp_size_mb: int
    workers: int
    isolate_network: bool
    isolate_processes: bool
    private_filesystem: bool
    run_as_user: str | int | None
    python: str | None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SandboxSettings:
        return cls(**{name: cfg[name] for name in cls.__dataclass_fields__})

    def user_ids(self) -> tuple[int, int] | None:
        """(uid, gid) of `run_as_user`, or None when programs run as the caller."""
        if self.run_as_user is None:
            return None
        import pwd

        try:
            entry = (
                pwd.getpwuid(self.run_as_user)
                if isinstance(self.run_as_user, int)
                else pwd.getpwnam(self.run_as_user)
            )
        except KeyError as error:
            raise SandboxUnavailableError(
                f"execution.run_as_user={self.run_as_user!r}: no such user"
            ) from error
        return entry.pw_uid, entry.pw_gid


def _count_tasks_of_user(uid: int) -> int:
    """Processes and threads whose real uid is `uid`, machine-wide (what RLIMIT_NPROC counts)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue  # the process ended while we looked
    return count


def _failure_reason(returncode: int, output: str) -> str:
    if returncode > 128 and (returncode - 128) in _SIGNAL_REASONS:
        return _SIGNAL_REASONS[signal.Signals(returncode - 128)]
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "Exception" in line]
    last = (errors or lines or [f"exit status {returncode}"])[-1]
    return last[:300]


def run_program(program: str, settings: SandboxSettings) -> ExecutionResult:
    """Run one program in the sandbox; raise SandboxUnavailableError if a protection cannot be applied."""
    if (
        settings.isolate_network or settings.isolate_processes or settings.private_filesystem
    ) and os.geteuid():
        raise SandboxUnavailableError(
            "network/process/filesystem isolation needs root (Linux namespaces); run as root or set "
            "execution.isolate_network, isolate_processes and private_filesystem to false (unprotected)"
        )
    ids = settings.user_ids()
    if ids is not None and os.geteuid():
        raise SandboxUnavailableError(
            f"execution.run_as_user={settings.run_as_user!r} needs root to switch users; "
            "set it to null to run programs as yourself (they could then delete your files)"
        )
    plan = {
        "settings": settings.__dict__,
        "uid_gid": ids,
        "nproc_limit": None if ids is None else _count_tasks_of_user(ids[0]) + settings.max_processes,
        "python": settings.python or sys.executable,
        "workdir": None,
    }
    status_read, status_write = os.pipe()
    workdir = None
    if not settings.private_filesystem:  # otherwise the private tmpfs at /tmp is the working directory
        workdir = tempfile.mkdtemp(prefix="sandbox-")
        if ids is not None:
            os.chown(workdir, *ids)
        plan["workdir"] = workdir
    plan["status_fd"] = status_write
    start = time.monotonic()
    try:
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__), json.dumps(plan)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(_PROGRAM_ENV),
                cwd="/",
                start_new_session=True,
                pass_fds=(status_write,),
            )
            os.close(status_write)
            status_write = -1
            timed_out = _feed_and_wait(process, program, settings.timeout_s, status_read)
            duration = time.monotonic() - start
            status_text = _read_all(status_read)
            output.seek(0)
            text = output.read().decode("utf-8", "replace")
    finally:
        if status_write >= 0:
            os.close(status_write)
        os.close(status_read)
        if workdir is not None:
            subprocess.run(["rm", "-rf", "--one-file-system", workdir], check=False)
    if "error:" in status_text:
        raise SandboxUnavailableError(status_text.split("error:", 1)[1].strip())
    if timed_out:
        return ExecutionResult(
            "timed out", f"wall-clock timeout of {settings.timeout_s} s", duration, text[-2000:]
        )
    if "ready" not in status_text:
        raise SandboxUnavailableError(f"the sandbox bootstrap died before running the program: {text[-500:]}")
    if process.returncode == 0:
        return ExecutionResult("passed", "", duration, text[-2000:])
    return ExecutionResult("failed", _failure_reason(process.returncode, text), duration, text[-2000:])


def _feed_and_wait(process: subprocess.Popen, program: str, timeout_s: float, status_read: int) -> bool:
    """Send the program, wait up to the timeout; on timeout kill the sandbox's init (and with it everything
    inside its PID namespace) and the whole session. Returns whether the program timed out."""
    try:
        process.stdin.write(program.encode("utf-8"))
        process.stdin.close()
    except BrokenPipeError:
        pass  # the bootstrap failed early; its status says why
    try:
        process.wait(timeout=timeout_s)
        return False
    except subprocess.TimeoutExpired:
        pass
    os.set_blocking(status_read, False)
    try:
        early = os.read(status_read, 4096).decode()
    except BlockingIOError:
        early = ""
    init_pids = [int(line.split()[1]) for line in early.splitlines() if line.startswith("init ")]
    for pid in init_pids:
        _kill_quietly(lambda pid=pid: os.kill(pid, signal.SIGKILL))
    try:
        # The kernel lets the outer bootstrap reap the killed init only once every process of the PID
        # namespace is gone, so when the bootstrap exits nothing of the program is left.
        process.wait(timeout=_KILL_GRACE_S if init_pids else 0)
    except subprocess.TimeoutExpired:
        _kill_quietly(lambda: os.killpg(process.pid, signal.SIGKILL))
        process.wait()
    os.set_blocking(status_read, True)
    return True


def _kill_quietly(kill) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended on its own meanwhile
        kill()


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def run_programs(programs: Sequence[str], settings: SandboxSettings) -> list[ExecutionResult]:
    """Run many programs, `settings.workers` at a time; results in input order."""
    with ThreadPoolExecutor(max_workers=max(1, settings.workers)) as pool:
        return list(pool.map(lambda program: run_program(program, settings), programs))


def describe_sandbox(settings: SandboxSettings) -> dict[str, Any]:
    """Run a probe program and report which protections are in force (for the run record)."""
    probe = (
        "import json, os, socket, sys\n"
        "print(json.dumps({'uid': os.getuid(), 'interfaces': [n for _, n in socket.if_nameindex()],\n"
        "    'visible_pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
        "    'cwd': os.getcwd(), 'python': sys.version.split()[0]}))"
    )
    result = run_program(probe, settings)
    if not result.passed:
        raise SandboxUnavailableError(f"the sandbox probe did not pass: {result.reason}")
    return {
        "settings": dict(settings.__dict__),
        "observed": json.loads(result.output.strip().splitlines()[-1]),
    }


# ---- the bootstrap: runs as `python -I execution.py PLAN`, stdlib only, before the program exists ----


def _libc_call(name: str, *arguments) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*arguments) != 0:
        raise OSError(ctypes.get_errno(), f"{name}{arguments}: {os.strerror(ctypes.get_errno())}")


def _mount_tmpfs(target: str, size_mb: int, options: str) -> None:
    data = f"size={size_mb}m,{options}".encode()
    _libc_call("mount", b"tmpfs", target.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, data)


def _prepare_init(plan: dict[str, Any], program: str) -> str:
    """Inside the new namespaces, as root: private mounts and the program file. Returns the working dir."""
    settings = plan["settings"]
    if settings["private_filesystem"] or settings["isolate_processes"]:
        # First of all: stop mount events propagating, or our mounts would appear on the host too.
        _libc_call("mount", None, b"/", None, _MS_REC | _MS_PRIVATE, None)
    if settings["private_filesystem"]:
        uid, gid = plan["uid_gid"] or (os.getuid(), os.getgid())
        _mount_tmpfs("/tmp", settings["private_tmp_size_mb"], f"mode=0700,uid={uid},gid={gid}")
        for shared in _OTHER_WRITABLE_DIRECTORIES:
            if os.path.isdir(shared):
                _mount_tmpfs(shared, settings["private_tmp_size_mb"], "mode=1777")
    if settings["isolate_processes"]:  # a /proc that shows only this namespace's processes
        _libc_call("mount", b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None)
    workdir = "/tmp" if settings["private_filesystem"] else plan["workdir"]
    path = os.path.join(workdir, "program.py")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(program)
    os.chmod(path, 0o444)
    return workdir


def _become_program(plan: dict[str, Any], workdir: str, status_fd: int) -> None:
    """In the program's process: limits, user switch, checks, then exec. Never returns."""
    settings = plan["settings"]
    os.chdir(workdir)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    memory = settings["memory_limit_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = settings["cpu_time_limit_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    size = settings["max_file_size_mb"] * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if plan["uid_gid"] is not None:
        uid, gid = plan["uid_gid"]
        resource.setrlimit(resource.RLIMIT_NPROC, (plan["nproc_limit"], plan["nproc_limit"]))
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getgroups():
            raise OSError("the user switch did not take effect")
        try:
            os.setuid(0)
            raise OSError("root privileges could be regained after the user switch")
        except PermissionError:
            pass
    if settings["isolate_network"]:
        names = [name for _, name in socket.if_nameindex()]
        if names != ["lo"]:
            raise OSError(f"network namespace check failed: interfaces {names}")
    os.write(status_fd, b"ready\n")
    try:
        os.execve(plan["python"], [plan["python"], "-I", "program.py"], dict(_PROGRAM_ENV, HOME=workdir))
    except OSError as error:
        raise OSError(
            f"the sandbox user cannot run {plan['python']} ({error.strerror}); set execution.python "
            "to an interpreter outside private directories such as /root (e.g. /usr/bin/python3)"
        ) from error


def _exit_status(wait_status: int) -> int:
    if os.WIFSIGNALED(wait_status):
        return 128 + os.WTERMSIG(wait_status)
    return os.WEXITSTATUS(wait_status)


def _bootstrap_main(plan_json: str) -> None:
    plan = json.loads(plan_json)
    settings, status_fd = plan["settings"], plan["status_fd"]
    os.set_inheritable(status_fd, False)  # the program must not be able to forge the status
    try:
        program = sys.stdin.read()
        flags = (
            (_CLONE_NEWNET if settings["isolate_network"] else 0)
            | (_CLONE_NEWPID | _CLONE_NEWNS if settings["isolate_processes"] else 0)
            | (_CLONE_NEWNS if settings["private_filesystem"] else 0)
        )
        if flags:
            _libc_call("unshare", flags)
        init_pid = os.fork()  # with a new PID namespace this child is its init (pid 1)
        if init_pid:
            os.write(status_fd, f"init {init_pid}\n".encode())
            os._exit(_exit_status(os.waitpid(init_pid, 0)[1]))
        workdir = _prepare_init(plan, program)
        program_pid = os.fork()
        if program_pid == 0:
            try:
                _become_program(plan, workdir, status_fd)
            except BaseException as error:  # report instead of running unprotected
                os.write(status_fd, f"error: {type(error).__name__}: {error}\n".encode())
                os._exit(_SETUP_FAILED_EXIT)
        while True:  # as init, reap orphans until the program itself ends
            pid, wait_status = os.wait()
            if pid == program_pid:
                os._exit(_exit_status(wait_status))
    except BaseException as error:
        os.write(status_fd, f"error: {type(error).__name__}: {error}\n".encode())
        os._exit(_SETUP_FAILED_EXIT)


if __name__ == "__main__":
    _bootstrap_main(sys.argv[1])
