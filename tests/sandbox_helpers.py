"""Shared by the sandbox tests: settings from the HumanEval config, markers to find a program's processes
on the host, and a harness in a subprocess (to kill it, or to start it under other limits)."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.sandbox import SandboxSettings
from tests.helpers import task_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="the namespace sandbox needs root (its absence is tested in test_execution.py)"
)


def humaneval_config() -> dict:
    return task_config("humaneval")


def config_settings(**changes) -> SandboxSettings:
    return dataclasses.replace(SandboxSettings.from_config(humaneval_config()["execution"]), **changes)


def marker() -> str:
    """A unique process name (15 characters, the kernel's limit) for /proc/<pid>/comm."""
    return "sbx" + secrets.token_hex(6)


def rename_self(name: str) -> str:
    """Program text that gives the current process the name `name` (inherited by its forks)."""
    return f"open('/proc/self/comm', 'w').write({name!r})\n"


def processes_named(name: str) -> list[int]:
    """Live (not zombie) processes on the host called `name`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                comm_and_rest = handle.read()
        except OSError:
            continue
        comm = comm_and_rest[comm_and_rest.index("(") + 1 : comm_and_rest.rindex(")")]
        state = comm_and_rest[comm_and_rest.rindex(")") + 2]
        if comm == name and state not in "ZX":
            found.append(int(pid))
    return found


def children_of(parent: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if int(handle.read().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(pid))
        except OSError:
            continue
    return found


def descendants_of(ancestor: int) -> list[int]:
    """Every live process below `ancestor` (children, their children, ...), as seen now."""
    found, pending = [], [ancestor]
    while pending:
        children = [pid for pid in children_of(pending.pop()) if running(pid)]
        found += children
        pending += children
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not: this machine's pid 1 may never reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def wait_until(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


# A harness in its own process. It imports tasks.sandbox without tasks/__init__.py (whose task modules
# pull in the ML stack and take seconds to import): the sandbox package needs only the standard library.
HARNESS = """
import json, sys, types
package = types.ModuleType("tasks"); package.__path__ = [sys.argv[1] + "/tasks"]; sys.modules["tasks"] = package
from tasks.sandbox import SandboxSettings, run_program, run_programs
settings = SandboxSettings(**json.loads(sys.argv[2]))
programs = json.loads(sys.argv[3])
print("harness ready", flush=True)
results = run_programs(programs, settings) if len(programs) > 1 else [run_program(programs[0], settings)]
print(json.dumps([result.as_record() | {"output": result.output} for result in results]), flush=True)
"""


def start_harness(
    settings: SandboxSettings, programs: list[str], python: str = sys.executable, **popen
) -> subprocess.Popen:
    arguments = [str(PROJECT_ROOT), json.dumps(dataclasses.asdict(settings)), json.dumps(programs)]
    return subprocess.Popen(
        [python, "-c", HARNESS, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
        **popen,
    )


def harness_results(process: subprocess.Popen, timeout_s: float = 60) -> list[dict]:
    stdout, stderr = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, stderr[-2000:]
    return json.loads(stdout.strip().splitlines()[-1])
