"""What the sandbox is asked to run (`Program`), how (`SandboxSettings`), and what came of it (`ExecutionResult`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from replicate.errors import MissingResource

# Every reason an ExecutionResult can carry, with what it means (the machine-readable part of a result).
REASONS = {
    "passed": "the check (or the script) ran to its end: the judge's verdict",
    "assertion": "an assertion of the check failed",
    "exception": "the program, the check or the candidate raised an exception (see `exception`)",
    "not_plain": "the candidate returned a value that is not plain data (or too large or deep to cross)",
    "protocol": "the candidate's process broke the channel's protocol, or the judge ended without a verdict",
    "exit": "the candidate's process ended (exit status, SystemExit, os._exit, exec) before the check completed",
    "timeout": "the wall-clock limit (timeout_s) was reached",
    "cpu_time": "the CPU time limit (RLIMIT_CPU) was reached",
    "memory": "the memory limit (RLIMIT_AS) was reached (MemoryError)",
    "file_size": "the file size limit (RLIMIT_FSIZE) was reached",
    "signal": "the program was killed by a signal",
    "sandbox_error": "the sandbox itself failed (not the program's fault); the result is not a score",
}
STATUSES = ("passed", "failed", "sandbox_error")


class SandboxUnavailableError(MissingResource):
    """A protection cannot be applied on this machine; nothing was run unprotected."""


class SandboxError(RuntimeError):
    """The sandbox failed while running a program (not the program's fault), so no score can be given."""


@dataclass(frozen=True)
class Program:
    """Source to run. With an entry point: `source` (untrusted: the prompt and the completion) defines the
    entry point and runs in the candidate's process; `judge` (trusted: the prompt's code and the test)
    defines `check` and runs in the judge's process, and the program passes only when `check(<stand-in for
    the entry point>)` returns there. Without: `source` is a script that passes when it runs to its end."""

    source: str
    entry_point: str | None = None
    judge: str | None = None

    def __post_init__(self):
        if (self.entry_point is None) != (self.judge is None):
            raise ValueError(
                f"Program: an entry point ({self.entry_point!r}) needs the judge's code defining check, and "
                "a script (no entry point) takes none"
            )


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one program. `status`: "passed", "failed" or "sandbox_error"; `reason`: a key of REASONS;
    `detail`: the human-readable why (exception line, exit status, limit)."""

    status: str
    reason: str
    detail: str
    duration_s: float
    sandboxed: bool  # False only where `allow_unsandboxed` let the program run without namespaces
    exception: str | None = None  # the exception's type name, for reasons "exception" and "assertion"
    exit_status: int | None = None
    signal: str | None = None
    output: str = ""  # the tail of the program's stdout and stderr

    def __post_init__(self):
        if self.status not in STATUSES or self.reason not in REASONS:
            raise ValueError(f"unknown execution status {self.status!r} or reason {self.reason!r}")
        if (self.status == "passed") != (self.reason == "passed"):
            raise ValueError(f"status {self.status!r} contradicts reason {self.reason!r}")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "exception": self.exception,
            "exit_status": self.exit_status,
            "signal": self.signal,
            "duration_s": round(self.duration_s, 4),
            "sandboxed": self.sandboxed,
        }


def _number(name: str, value: Any, kind: type, minimum: float) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise ValueError(f"execution.{name}={value!r}: expected {kind.__name__}")
    if not value >= minimum or (kind is float and not math.isfinite(value)):
        raise ValueError(f"execution.{name}={value!r}: must be >= {minimum}")
    return kind(value)


@dataclass(frozen=True)
class SandboxSettings:
    """Limits and protections, read from the task config's `execution` mapping (no defaults here: the
    config is the one place they are set, see conf/task/humaneval.yaml)."""

    timeout_s: float
    cpu_time_limit_s: int
    memory_limit_mb: int
    max_processes: int
    max_file_size_mb: int
    private_tmp_size_mb: int
    workers: int
    uid_base: int
    uid_slots: int
    python: str | None
    allow_unsandboxed: bool

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> SandboxSettings:
        names = [field.name for field in fields(cls)]
        missing, unknown = sorted(set(names) - set(cfg)), sorted(set(cfg) - set(names))
        if missing or unknown:
            raise ValueError(f"execution settings: missing {missing}, unknown {unknown}; expected {names}")
        return cls(**{name: cfg[name] for name in names})

    def __post_init__(self):
        minimums = {"cpu_time_limit_s": 1, "memory_limit_mb": 64, "max_processes": 1, "max_file_size_mb": 1}
        minimums |= {"private_tmp_size_mb": 1, "workers": 1, "uid_slots": 1}
        for name, minimum in minimums.items():
            _number(name, getattr(self, name), int, minimum)
        _number("timeout_s", self.timeout_s, float, 0.1)
        # Dedicated uids must be nobody's: above the 16-bit range of system and login users, and below
        # the reserved (uid_t) -1.
        _number("uid_base", self.uid_base, int, 100_000)
        if self.uid_base + self.uid_slots > 2**32 - 2:
            raise ValueError(
                f"execution.uid_base + uid_slots = {self.uid_base + self.uid_slots} exceeds 2**32 - 2"
            )
        if self.uid_slots < 2 * self.workers:  # the judge and the candidate each hold one
            raise ValueError(f"execution.uid_slots={self.uid_slots} must be >= 2 * workers={self.workers}")
        if self.python is not None and not (isinstance(self.python, str) and self.python.startswith("/")):
            raise ValueError(f"execution.python={self.python!r}: expected an absolute path or null")
        if not isinstance(self.allow_unsandboxed, bool):
            raise ValueError(
                f"execution.allow_unsandboxed={self.allow_unsandboxed!r}: expected true or false"
            )
