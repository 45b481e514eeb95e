"""What came back from one sandbox (the bootstrap's status events, the judge's verdict line), as a result.

Whatever the result pipe holds gives a result: the judge's verdict when it is exactly one well-formed line
whose status and reason agree, else a failure with reason `protocol`. Only the bootstrap's own setup error
raises (SandboxUnavailableError), and only the bootstrap, the init or the harness give `sandbox_error`
(the candidate's process holds neither the status pipe nor the result pipe).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
from dataclasses import dataclass
from typing import Any

from .settings import REASONS, STATUSES, ExecutionResult, SandboxSettings, SandboxUnavailableError

SETUP_GRACE_S = 10.0  # beyond timeout_s, for building the sandbox; past it the harness kills it itself
OPT_IN_HINT = (
    "run as root on a machine that allows namespaces, or set execution.allow_unsandboxed: true to run "
    "programs with resource limits only (each result then records sandboxed: false)"
)
_SIGNAL_REASONS = {signal.SIGXCPU: "cpu_time", signal.SIGXFSZ: "file_size"}


def _events(status_lines: list[str]) -> list[dict[str, Any]]:
    events = []
    for line in status_lines:
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events


_VERDICT_FIELDS = {"status": str, "reason": str, "detail": str, "exception": str, "candidate_ended": bool}


def _verdict(report_lines: list[str]) -> dict | str:
    """The judge's verdict, or why the result pipe holds none that can be trusted (a str)."""
    if len(report_lines) != 1:
        return f"{len(report_lines)} lines on the result pipe, not one verdict"
    try:
        verdict = json.loads(report_lines[0])
    except ValueError:
        return "a verdict that is not JSON"
    if type(verdict) is not dict or not {"status", "reason", "detail"} <= set(verdict) <= set(
        _VERDICT_FIELDS
    ):
        return "a verdict with missing or unknown fields"
    if any(type(value) is not _VERDICT_FIELDS[name] for name, value in verdict.items()):
        return "a verdict with fields of the wrong type"
    if verdict["status"] not in STATUSES or verdict["reason"] not in REASONS:
        return f"a verdict with status {verdict['status'][:40]!r} and reason {verdict['reason'][:40]!r}"
    if (verdict["status"] == "passed") != (verdict["reason"] == "passed") or (
        (verdict["status"] == "sandbox_error") != (verdict["reason"] == "sandbox_error")
    ):
        return "a verdict whose status contradicts its reason"
    return verdict


def _ended_by(process: dict | None, settings: SandboxSettings, result) -> ExecutionResult:
    """A failure named after how the candidate's process ended (its wait status, from the init)."""
    if process is None:
        return result("failed", "exit", "the candidate's process ended before the check completed")
    status = process["wait_status"]
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        reason = _SIGNAL_REASONS.get(number, "signal")
        if number == signal.SIGKILL and process["cpu_s"] >= settings.cpu_time_limit_s:
            reason = "cpu_time"  # the hard RLIMIT_CPU, one second after an ignored SIGXCPU
        return result("failed", reason, f"killed by {name} before the check completed", signal=name)
    code = os.WEXITSTATUS(status)
    return result("failed", "exit", f"exit status {code} before the check completed", exit_status=code)


@dataclass(frozen=True)
class SandboxReport:
    """What one sandbox left for the harness: the bootstrap's status lines, the result pipe's lines, the
    tail of its output, whether the harness had to kill it for being overdue, its wall-clock seconds and
    whether it ran sandboxed."""

    status_lines: list[str]
    report_lines: list[str]
    output: str
    overdue: bool
    duration_s: float
    sandboxed: bool


def classify(report: SandboxReport, settings: SandboxSettings) -> ExecutionResult:
    """The result of one run, from what the bootstrap and the judge reported. Raises only for a sandbox
    that cannot be set up; whatever the result pipe holds gives a result."""
    status_lines, report_lines, output = report.status_lines, report.report_lines, report.output
    result = functools.partial(
        ExecutionResult, duration_s=report.duration_s, sandboxed=report.sandboxed, output=output
    )
    events = _events(status_lines)
    errors = [event for event in events if event.get("event") == "error"]
    if errors and errors[0].get("stage") == "setup":
        raise SandboxUnavailableError(
            f"the sandbox could not be set up: {errors[0].get('message')}; {OPT_IN_HINT}"
        )
    if errors:
        return result("sandbox_error", "sandbox_error", f"the sandbox failed: {errors[0].get('message')}")
    if report.overdue:
        detail = f"the sandbox did not end within timeout_s + {SETUP_GRACE_S} s; the harness killed it"
        return result("sandbox_error", "sandbox_error", detail)
    ended = next((event for event in events if event.get("event") == "ended"), None)
    if ended is None:
        return result(
            "sandbox_error", "sandbox_error", f"the sandbox ended without a report: {output[-300:]!r}"
        )
    if not report_lines and ended["timed_out"]:
        return result("failed", "timeout", f"wall-clock limit of {settings.timeout_s} s")
    verdict = _verdict(report_lines)
    if isinstance(verdict, str):
        judge = ended.get("judge") or {}
        return result("failed", "protocol", f"no trustworthy verdict: {verdict} (judge: {judge})")
    if verdict.get("candidate_ended"):
        return _ended_by(ended.get("candidate"), settings, result)
    return result(verdict["status"], verdict["reason"], verdict["detail"], exception=verdict.get("exception"))
