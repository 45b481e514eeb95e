"""The sandbox's bootstrap: `python -I -S bootstrap.py PLAN`, started by the harness (harness.py), stdlib only.

Process tree of one program (sandboxed):

    harness thread --- bootstrap (root; PR_SET_PDEATHSIG to the harness thread)
                          `-- init (pid 1 of a new PID namespace; PR_SET_PDEATHSIG to the bootstrap, and a
                               |    lifeline pipe from it): builds the new root, then watches the program
                               `-- program (the runner, as the check's own uid, under resource limits)

- If the harness dies (SIGKILL, Ctrl-C), the kernel kills the bootstrap (PDEATHSIG), then the init (its
  PDEATHSIG, and the lifeline pipe reads EOF), and with the init every process of the PID namespace.
- The init enforces the wall-clock limit itself: when the program has run `timeout_s` it kills every
  process of the namespace (kill(-1, SIGKILL) from pid 1), so the limit holds without the harness.
- When the program ends, the init kills whatever it left behind (daemons, forks) and reaps it; the kernel
  lets the bootstrap reap the init only once the namespace is empty, so nothing outlives the bootstrap.

The bootstrap reports on the status pipe (never inherited by the program), one JSON object a line:
{"event": "ended", ...} with the program's wait status, or {"event": "error", "stage": ..., "message": ...}.
Unsandboxed (the explicit `allow_unsandboxed` opt-in where namespaces are unavailable) the bootstrap
watches the program itself as a child subreaper and kills all its descendants when it ends.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import sys
import time

if not __package__:  # run as a script: the sibling modules are top-level modules
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import limits
    import rootfs
    import syscalls

SETUP_FAILED_EXIT = 125
TICK_S = 0.05  # how often the watcher reaps orphans while waiting


def _report(fd: int, **event) -> None:
    os.write(fd, (json.dumps(event) + "\n").encode())


def _fail(fd: int, stage: str, error: BaseException) -> None:
    """Report why a step failed and end this process (the program never runs unprotected)."""
    try:
        _report(fd, event="error", stage=stage, message=f"{type(error).__name__}: {error}")
    finally:
        os._exit(SETUP_FAILED_EXIT)


def _reap(program: int) -> tuple[int, object] | None:
    """Reap every ended child (orphans are reparented to us); the program's (wait status, rusage) once it
    has ended, else None."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        if pid == program:
            return status, usage


def _watch(program: int, timeout_s: float, lifeline: int | None, on_parent_lost) -> dict:
    """Wait for the program, at most timeout_s (wall clock), reaping orphans meanwhile."""
    pidfd = os.pidfd_open(program)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if lifeline is not None:
        poller.register(lifeline, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while True:
        ended = _reap(program)
        if ended is not None:
            status, usage = ended
            cpu_s = usage.ru_utime + usage.ru_stime
            return {
                "timed_out": False,
                "wait_status": status,
                "cpu_s": round(cpu_s, 3),
                "max_rss_kb": usage.ru_maxrss,
            }
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return {"timed_out": True, "wait_status": None, "cpu_s": None, "max_rss_kb": None}
        for fd, _ in poller.poll(math.ceil(min(remaining, TICK_S) * 1000)):
            if fd == lifeline:  # the bootstrap, hence the harness, is gone
                on_parent_lost()


def _kill_namespace() -> None:
    """As pid 1 of the PID namespace: kill every other process in it, then reap them all."""
    with contextlib.suppress(ProcessLookupError):  # nothing left
        os.kill(-1, signal.SIGKILL)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _children() -> list[int]:
    mine = str(os.getpid())
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if fields[1] == mine:
            found.append(int(pid))
    return found


def _kill_descendants(program: int) -> None:
    """As a child subreaper: kill the program's process group, then every child (orphans are reparented to
    us as their parents die) until none is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(program, signal.SIGKILL)
    while True:
        children = _children()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            if not children:
                return
        time.sleep(0.01)


def _init(plan: dict, lifeline: int) -> None:
    """pid 1 of the new PID namespace. Never returns."""
    status = plan["fds"]["status"]
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        if select.select([lifeline], [], [], 0)[0]:  # EOF already: the bootstrap died before the prctl
            os._exit(SETUP_FAILED_EXIT)
        rootfs.build_root(plan)
    except BaseException as error:
        _fail(status, "setup", error)
    _run_program(plan, "/tmp", rootfs.RUNNER_PATH, lifeline, lambda program: _kill_namespace())


def _run_program(plan: dict, workdir: str, runner: str, lifeline: int | None, cleanup) -> None:
    """Fork the program, watch it, clean up after it (cleanup(program pid)), report. Never returns."""
    fds = plan["fds"]
    parent = os.getpid()
    try:
        program = os.fork()
    except BaseException as error:
        _fail(fds["status"], "run", error)
    if program == 0:
        try:
            limits.become_program(plan, fds, workdir, runner, parent)
        except BaseException as error:
            _fail(fds["status"], "setup", error)
    os.close(fds["job"])
    os.close(fds["result"])

    def parent_lost():
        cleanup(program)
        os._exit(1)

    try:
        outcome = _watch(program, plan["limits"]["timeout_s"], lifeline, parent_lost)
        cleanup(program)
        _report(fds["status"], event="ended", **outcome)
    except BaseException as error:
        cleanup(program)
        _fail(fds["status"], "run", error)
    os._exit(0)


def _unsandboxed(plan: dict) -> None:
    """The explicit opt-in without namespaces: resource limits, the check's uid where we are root, a private
    working directory, and a subreaper that kills whatever the program leaves. Never returns."""
    status = plan["fds"]["status"]
    try:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        workdir = plan["workdir"]
        runner = os.path.join(workdir, ".runner.py")
        shutil.copyfile(plan["runner"], runner)
        os.chmod(runner, 0o444)
        if plan["uid"] is not None:
            os.chown(workdir, plan["uid"], plan["uid"])
    except BaseException as error:
        _fail(status, "setup", error)
    _run_program(plan, workdir, runner, None, _kill_descendants)


def main(plan_json: str) -> None:
    plan = json.loads(plan_json)
    fds = plan["fds"]
    for fd in fds.values():
        os.set_inheritable(fd, False)  # the program gets only what limits.become_program places
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != plan["harness_pid"]:  # the harness died before the prctl took effect
            os._exit(SETUP_FAILED_EXIT)
    except BaseException as error:
        _fail(fds["status"], "setup", error)
    if not plan["sandboxed"]:
        _unsandboxed(plan)
    try:
        syscalls.unshare(syscalls.SANDBOX_NAMESPACES)
    except OSError as error:
        message = (
            f"creating the mount, PID, network, IPC and UTS namespaces was refused ({error}); this needs "
            "root with CAP_SYS_ADMIN, which some containers withhold"
        )
        _fail(fds["status"], "setup", OSError(message))
    lifeline, keep_alive = os.pipe()  # the init sees EOF on it when the bootstrap dies
    init = os.fork()  # in the new PID namespace this child is its init (pid 1)
    if init == 0:
        os.close(keep_alive)
        _init(plan, lifeline)
    os.close(lifeline)
    os.close(fds["job"])
    os.close(fds["result"])
    _, wait_status = os.waitpid(init, 0)
    os._exit(0 if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0 else 1)


if __name__ == "__main__":
    main(sys.argv[1])
