"""The judge: `python -I judge.py`, a process of its own that never executes a line of the completion.

Stdlib only, Python 3.8+ (it runs under the configured interpreter). It reads its job on descriptor 3 (the
judge's source: the problem's prompt, whose helper functions it keeps as its own copy, and the test that
defines `check`; the entry point), then waits for the candidate's process (candidate.py, another uid) to
report on descriptor 6 whether the completion loaded. The check runs here with a stand-in for the
candidate: each call sends the arguments over descriptor 5 as plain data (channel.py) and returns the
value the candidate sent back, rebuilt from builtin types; an exception of the candidate crosses as its
type name and message. The verdict is decided here and written, one JSON line, to descriptor 4 (the
result pipe, which the candidate's process never holds). A malformed or unexpected reply fails the sample
with reason `protocol`; a value that is not plain data with `not_plain`; the candidate's process ending
before the check completed with `exit` (`candidate_ended`: the harness names the cause from its wait
status). See docs/sandbox.md.
"""

from __future__ import annotations

import os
import sys

if __package__:  # imported by the harness's tests as tasks.sandbox.*
    from . import channel
else:  # run as a script: -I leaves the script's directory out of sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import channel

JOB_FD, RESULT_FD, CALLS_FD, REPLIES_FD = 3, 4, 5, 6
_EFBIG = 27  # errno.EFBIG on Linux (the errno module is not worth its import here)
_MESSAGE_FIELDS = {
    "ready": {"kind"},
    "returned": {"kind", "value"},
    "raised": {"kind", "type", "message", "base", "errno"},
    "not_plain": {"kind", "type"},
}


class CandidateError(Exception):
    """An exception the candidate raised (an Exception there), re-raised in the check by type name."""

    def __init__(self, type_name: str, message: str, error_number):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name, self.error_number = type_name, error_number


class _Stop(BaseException):
    """Ends the check whatever it catches; the verdict is already decided."""


def _failed(reason: str, detail: str, **extra) -> dict:
    return {"status": "failed", "reason": reason, "detail": detail[:500], **extra}


def _valid(message: dict | None) -> dict | None:
    """The candidate's message when it has exactly the fields of its kind; raises ProtocolError."""
    if message is None:
        return None
    fields = _MESSAGE_FIELDS.get(message["kind"])
    if fields is None or set(message) != fields:
        raise channel.ProtocolError(f"an unexpected message of kind {message['kind'][:40]!r}")
    if message["kind"] == "raised":
        shape = [type(message[name]) for name in ("type", "message", "base")]
        if shape != [str, str, bool] or type(message["errno"]) not in (int, type(None)):
            raise channel.ProtocolError("a malformed exception report")
    if message["kind"] == "not_plain" and type(message["type"]) is not str:
        raise channel.ProtocolError("a malformed not_plain report")
    return message


def _raised(message: dict) -> dict:
    """The verdict for an exception that ended the candidate's part (while loading, or a BaseException)."""
    name, text = message["type"][:100], message["message"][:300]
    line = f"{name}: {text}" if text else name
    if name == "SystemExit":
        return _failed("exit", f"SystemExit({text}) before the check completed")
    return _exception_verdict(name, line, message["errno"])


def _exception_verdict(name: str, line: str, error_number) -> dict:
    if name == "MemoryError":
        return _failed("memory", line, exception=name)
    if name == "OSError" and error_number == _EFBIG:
        return _failed("file_size", line, exception=name)
    return _failed("exception", line, exception=name)


_ENDED = _failed("exit", "the candidate's process ended before the check completed", candidate_ended=True)


def _candidate(state: dict):
    """The stand-in the check calls; sets state["verdict"] and raises _Stop when the candidate misbehaves."""

    def candidate(*args, **kwargs):
        if state["verdict"] is not None:
            raise _Stop
        try:
            channel.send(CALLS_FD, {"kind": "call", "args": list(args), "kwargs": kwargs})
        except channel.NotPlainError as error:  # the dataset's arguments: not the candidate's fault
            detail = f"the check passes an argument the channel cannot carry: {error}"
            state["verdict"] = {"status": "sandbox_error", "reason": "sandbox_error", "detail": detail}
            raise _Stop from None
        except OSError:
            state["verdict"] = _ENDED
            raise _Stop from None
        try:
            reply = _valid(channel.receive(REPLIES_FD))
            if reply is None:
                state["verdict"] = _ENDED
            elif reply["kind"] == "returned":
                return reply["value"]
            elif reply["kind"] == "not_plain":
                detail = f"the candidate returned a {reply['type'][:100]}, which is not plain data"
                state["verdict"] = _failed("not_plain", detail)
            elif reply["kind"] == "raised" and not reply["base"]:
                raise CandidateError(reply["type"][:100], reply["message"][:300], reply["errno"])
            elif reply["kind"] == "raised":
                state["verdict"] = _raised(reply)
            else:
                raise channel.ProtocolError("a second ready message")
        except channel.ProtocolError as error:
            state["verdict"] = _failed("protocol", f"the candidate's reply broke the protocol: {error}")
        raise _Stop

    return candidate


def judge(job: dict) -> dict:
    try:
        loaded = _valid(channel.receive(REPLIES_FD))
    except channel.ProtocolError as error:
        return _failed("protocol", f"the candidate's first message broke the protocol: {error}")
    if loaded is None:
        return _ENDED
    if loaded["kind"] == "raised":
        return _raised(loaded)
    if loaded["kind"] != "ready":
        return _failed("protocol", f"the candidate's first message was {loaded['kind']!r}, not 'ready'")
    entry_point = job["entry_point"]
    if entry_point is None:  # a script: it ran to its end
        return {"status": "passed", "reason": "passed", "detail": ""}
    namespace: dict = {}
    try:
        exec(compile(job["judge"], "check.py", "exec"), namespace)
    except BaseException as error:  # noqa: B036 - the dataset's code, not the candidate's: no score
        detail = f"the judge's code failed: {type(error).__name__}: {error}"[:500]
        return {"status": "sandbox_error", "reason": "sandbox_error", "detail": detail}
    check = namespace.get("check")
    if not callable(check):
        return _failed(
            "exception", "NameError: the judge's code defines no function 'check'", exception="NameError"
        )
    state: dict = {"verdict": None}
    namespace[entry_point] = candidate = _candidate(state)  # a check may name the function globally
    try:
        check(candidate)
    except _Stop:
        pass
    except CandidateError as error:
        if state["verdict"] is None:
            state["verdict"] = _exception_verdict(error.type_name, str(error), error.error_number)
    except AssertionError as error:  # raised here, the judge's own code: the check's (or a helper's) assert
        if state["verdict"] is None:
            state["verdict"] = _failed(
                "assertion", f"AssertionError: {error}".rstrip(": "), exception="AssertionError"
            )
    except BaseException as error:  # noqa: B036 - any other way out of the check is a failure
        if state["verdict"] is None:
            _print_traceback()
            state["verdict"] = _exception_verdict(
                type(error).__name__, f"{type(error).__name__}: {error}", None
            )
    return state["verdict"] or {"status": "passed", "reason": "passed", "detail": ""}


def _print_traceback() -> None:
    import traceback  # only on this path: the import costs more than the rest of the judge's start

    traceback.print_exc(limit=20)


_ESCAPES = {**{code: f"\\u{code:04x}" for code in range(32)}, ord('"'): '\\"', ord("\\"): "\\\\"}


def verdict_line(verdict: dict) -> bytes:
    """The verdict as one JSON line (str and bool fields only), written without importing json."""
    fields = []
    for name, value in verdict.items():
        text = ("true" if value else "false") if type(value) is bool else f'"{value.translate(_ESCAPES)}"'
        fields.append(f'"{name}": {text}')
    return ("{" + ", ".join(fields) + "}\n").encode("utf-8", "replace")


def main() -> None:
    job = channel.read_job(JOB_FD)
    verdict = judge(job)
    try:
        os.write(RESULT_FD, verdict_line(verdict))
    finally:
        channel.end_process()


if __name__ == "__main__":
    main()
