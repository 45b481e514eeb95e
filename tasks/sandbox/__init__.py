"""Sandboxed execution of untrusted programs (HumanEval completions); the threat model is in tasks/humaneval.py.

- harness.py: starts one sandbox per program and classifies what came back (`run_program`);
- pool.py: `run_programs` (`workers` in parallel) and `describe_sandbox` (the protections in force);
- bootstrap.py, rootfs.py, limits.py, syscalls.py: build the sandbox (stdlib only, run as a script);
- judge.py: runs the check in a process of its own and decides the verdict; candidate.py: runs the
  completion in another and serves the judge's calls; channel.py: the plain data between them (stdlib only);
- seccomp.py: the system call filter of both;
- verdicts.py: the result of one run from its reports; uids.py: a uid of its own for every running
  process; settings.py: settings and results.
"""

from .harness import missing_requirement, run_program, unsandboxed_reason
from .pool import describe_sandbox, run_programs
from .settings import (
    REASONS,
    ExecutionResult,
    Program,
    SandboxError,
    SandboxSettings,
    SandboxUnavailableError,
)

__all__ = [
    "REASONS",
    "ExecutionResult",
    "Program",
    "SandboxError",
    "SandboxSettings",
    "SandboxUnavailableError",
    "describe_sandbox",
    "missing_requirement",
    "run_program",
    "run_programs",
    "unsandboxed_reason",
]
