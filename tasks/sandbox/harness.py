"""The harness side: start a sandbox per program, wait for it, and turn what came back into a result.

Each program runs through the bootstrap (bootstrap.py, a fresh `python -I -S` process, stdlib only), which
builds the sandbox and starts two processes under the configured interpreter, each as a uid of its own:
the candidate (candidate.py: the prompt and the completion) and the judge (judge.py: the prompt's code and
the check), which calls the candidate's function over two pipes carrying plain data only. The harness
hands over four descriptors: the judge's job and the candidate's job (memfds), the result pipe (where only
the judge reports its verdict; the candidate's process never holds it) and the status pipe (where only the
bootstrap and the init report). A result is "passed" only when the judge says so; a verdict that is not
exactly one well-formed line of the judge's is a failure with reason `protocol`, never an exception.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import channel, rootfs, seccomp, syscalls, uids
from .settings import ExecutionResult, Program, SandboxSettings, SandboxUnavailableError
from .verdicts import OPT_IN_HINT as _OPT_IN_HINT
from .verdicts import SETUP_GRACE_S, SandboxReport, classify

_HERE = os.path.dirname(os.path.abspath(__file__))
BOOTSTRAP = os.path.join(_HERE, "bootstrap.py")
SCRIPTS = {name: os.path.join(_HERE, f"{name}.py") for name in ("judge", "candidate", "channel")}
_POLL_S = 0.05
_BOOTSTRAP_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_OUTPUT_TAIL = 2000


def missing_requirement() -> str | None:
    """What this machine lacks for the namespace sandbox (checked without starting anything), or None."""
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            f"root privileges (running as uid {os.geteuid()}): the sandbox creates mount, PID, network, IPC "
            "and UTS namespaces and switches each program to a uid of its own"
        )
    machine = os.uname().machine
    if machine not in seccomp.ARCHITECTURES:
        return f"a seccomp system call table for the {machine} architecture (known: {sorted(seccomp.ARCHITECTURES)})"
    if machine not in syscalls.PIVOT_ROOT_SYSCALL:
        return f"pivot_root support for the {machine} architecture (known: {sorted(syscalls.PIVOT_ROOT_SYSCALL)})"
    return None


@functools.lru_cache(maxsize=8)
def interpreter(python: str | None) -> tuple[str, tuple[str, ...]]:
    """(real path of the interpreter, its installation prefixes) for mounting it read-only."""
    path = os.path.realpath(python or sys.executable)
    if not os.access(path, os.X_OK):
        raise SandboxUnavailableError(f"execution.python={python!r}: {path} is not an executable interpreter")
    query = "import json, sys; print(json.dumps([sys.base_prefix, sys.base_exec_prefix]))"
    found = subprocess.run([path, "-I", "-S", "-c", query], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        raise SandboxUnavailableError(
            f"execution.python={python!r}: {path} failed to start: {found.stderr[-300:]}"
        )
    prefixes = {os.path.realpath(prefix) for prefix in json.loads(found.stdout)} | {os.path.dirname(path)}
    under_tmp = sorted(prefix for prefix in prefixes if f"{prefix}/".startswith("/tmp/"))
    if under_tmp:
        raise SandboxUnavailableError(
            f"execution.python={python!r}: its installation {under_tmp} lies under /tmp, which the sandbox "
            "replaces with the program's private /tmp; use an interpreter installed elsewhere"
        )
    if "/" in prefixes:
        raise SandboxUnavailableError(
            f"execution.python={python!r}: its prefix is /, which cannot be mounted alone"
        )
    return path, tuple(sorted(prefixes))


_availability: dict[SandboxSettings, str | None] = {}
_availability_lock = threading.Lock()


def unsandboxed_reason(settings: SandboxSettings) -> str | None:
    """Why programs under these settings run without the namespace sandbox, or None when they run in it.

    Without the explicit opt-in `allow_unsandboxed`, a missing requirement raises SandboxUnavailableError
    naming it. With it, a probe program decides once per settings whether the sandbox works here."""
    missing = missing_requirement()
    if not settings.allow_unsandboxed:
        if missing is not None:
            raise SandboxUnavailableError(f"the HumanEval sandbox needs {missing}; {_OPT_IN_HINT}")
        return None
    with _availability_lock:
        if settings not in _availability:
            if missing is None:
                try:
                    # A generous wall clock: this probes the protections, not the machine's load.
                    patient = dataclasses.replace(settings, timeout_s=max(settings.timeout_s, 60.0))
                    probe = _run(Program("pass\n"), patient, sandboxed=True, cancel=None)
                    if not probe.passed:
                        missing = f"a working sandbox (a probe program failed: {probe.detail})"
                except SandboxUnavailableError as error:
                    missing = str(error)
            _availability[settings] = missing
        return _availability[settings]


def run_program(
    program: Program | str, settings: SandboxSettings, cancel: threading.Event | None = None
) -> ExecutionResult:
    """Run one program (a str is a script); raises SandboxUnavailableError if a protection cannot be applied.
    `cancel`, set from another thread, kills the program and raises KeyboardInterrupt."""
    program = Program(program) if isinstance(program, str) else program
    sandboxed = unsandboxed_reason(settings) is None
    return _run(program, settings, sandboxed, cancel)


@functools.lru_cache(maxsize=8)
def _checked_uid_range(settings: SandboxSettings) -> None:
    uids.check_range(settings)


def _run(program: Program, settings: SandboxSettings, sandboxed: bool, cancel) -> ExecutionResult:
    if sandboxed or os.geteuid() == 0:  # root runs every program as a uid of its own, sandboxed or not
        _checked_uid_range(settings)
        with uids.dedicated_uid(settings) as candidate_uid, uids.dedicated_uid(settings) as judge_uid:
            return _execute(program, settings, sandboxed, (candidate_uid, judge_uid), cancel)
    return _execute(program, settings, sandboxed, (None, None), cancel)


def _hidden_paths(prefixes: tuple[str, ...]) -> list[str]:
    """Host paths that must not exist inside the sandbox: the checkout, the harness's working directory,
    the home directories; except any on the way to a mounted directory (a pyenv prefix under /root)."""
    mounted = [*rootfs.SYSTEM_DIRECTORIES, *prefixes]
    checkout = os.path.dirname(os.path.dirname(_HERE))
    candidates = {os.getcwd(), checkout, _HERE, os.path.expanduser("~"), "/root", "/home"}
    return sorted(
        path
        for path in candidates
        if path != "/"
        and not any(f"{m}/".startswith(f"{path}/") or path.startswith(f"{m}/") for m in mounted)
    )


def _job(content: dict) -> int:
    fd = os.memfd_create("sandbox-job", os.MFD_CLOEXEC)  # in memory: nothing on disk to find
    with open(fd, "wb", closefd=False) as handle:
        handle.write(channel.encode(content))
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _execute(
    program: Program, settings: SandboxSettings, sandboxed: bool, uid_pair, cancel
) -> ExecutionResult:
    python, prefixes = interpreter(settings.python)
    fds = {  # the candidate's job never holds the check, the judge's never the completion
        "candidate_job": _job({"source": program.source, "entry_point": program.entry_point}),
        "judge_job": _job({"judge": program.judge, "entry_point": program.entry_point}),
    }
    result_read, fds["result"] = os.pipe()
    status_read, fds["status"] = os.pipe()
    workdir = None if sandboxed else tempfile.mkdtemp(prefix="sandbox-")
    limits = {name: getattr(settings, name) for name in ("timeout_s", "cpu_time_limit_s", "memory_limit_mb")}
    limits |= {
        name: getattr(settings, name) for name in ("max_processes", "max_file_size_mb", "private_tmp_size_mb")
    }
    plan = {
        "harness_pid": os.getpid(),
        "sandboxed": sandboxed,
        "fds": fds,
        "python": python,
        "python_prefixes": list(prefixes),
        "scripts": dict(SCRIPTS),
        "uids": {"candidate": uid_pair[0], "judge": uid_pair[1]},
        "workdir": workdir,
        "limits": limits,
        "hidden_paths": _hidden_paths(prefixes),  # checked from inside
    }
    start = time.monotonic()
    try:
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", BOOTSTRAP, json.dumps(plan)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(_BOOTSTRAP_ENV),
                cwd="/",
                start_new_session=True,  # Ctrl-C in the terminal reaches the harness, which ends the sandbox
                pass_fds=tuple(fds.values()),
            )
            for name in list(fds):
                os.close(fds.pop(name))
            overdue = _wait(process, settings.timeout_s + SETUP_GRACE_S, cancel)
            duration = time.monotonic() - start
            status_lines, report_lines = _drain(status_read), _drain(result_read)
            output.seek(max(0, output.seek(0, os.SEEK_END) - 4 * _OUTPUT_TAIL))  # up to max_file_size_mb
            text = output.read().decode("utf-8", "replace")[-_OUTPUT_TAIL:]
    finally:
        for fd in (*fds.values(), result_read, status_read):
            os.close(fd)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return classify(SandboxReport(status_lines, report_lines, text, overdue, duration, sandboxed), settings)


def _wait(process: subprocess.Popen, limit_s: float, cancel) -> bool:
    """Wait for the bootstrap; past limit_s, or when cancelled or interrupted, kill it (the kernel then
    ends the init and its namespace). Returns whether the harness had to kill it for being overdue."""
    deadline = time.monotonic() + limit_s
    try:
        while True:
            try:
                process.wait(timeout=_POLL_S)
                return False
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                raise KeyboardInterrupt("scoring cancelled")
            if time.monotonic() > deadline:
                _kill(process)
                return True
    except BaseException:
        _kill(process)
        raise


def _kill(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _drain(fd: int) -> list[str]:
    """Everything written so far (the writers are gone; a lingering one would not block us)."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace").splitlines()
