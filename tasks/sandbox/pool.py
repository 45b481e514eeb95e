"""Many programs at once (`workers` in parallel), and the probe that says which protections are in force."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .harness import run_program, unsandboxed_reason
from .settings import ExecutionResult, Program, SandboxSettings, SandboxUnavailableError


def run_programs(programs: Sequence[Program | str], settings: SandboxSettings) -> list[ExecutionResult]:
    """Run every program, `settings.workers` at a time; results in input order. On any error or Ctrl-C the
    queued programs are dropped and the running ones killed before the exception propagates."""
    if not programs:
        return []
    unsandboxed_reason(settings)  # a missing protection fails here, before any program runs
    cancel = threading.Event()
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="sandbox")
    try:
        futures = [pool.submit(run_program, program, settings, cancel) for program in programs]
        return [future.result() for future in futures]
    except BaseException:
        cancel.set()
        raise
    finally:
        # Each program is started and awaited by one pool thread, which outlives it: the bootstrap's
        # PR_SET_PDEATHSIG follows the thread that started it.
        pool.shutdown(wait=True, cancel_futures=True)


PROBE_TIMEOUT_S = 60.0
PROBE = """\
import json, os, resource, socket, sys
limits = {name: resource.getrlimit(getattr(resource, name))
          for name in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NPROC", "RLIMIT_CORE")}
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "hostname": socket.gethostname(),
    "interfaces": [name for _, name in socket.if_nameindex()],
    "visible_pids": sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit()),
    "root_entries": sorted(os.listdir("/")), "cwd": os.getcwd(), "python": sys.version.split()[0],
    "executable": sys.executable, "rlimits": limits,
}))
"""


def describe_sandbox(settings: SandboxSettings) -> dict[str, Any]:
    """Run a probe program and report which protections are in force (for the run record). Raises
    SandboxUnavailableError when the sandbox is required but cannot run here."""
    reason = unsandboxed_reason(settings)
    # The probe checks protections, not speed: on a loaded machine, three interpreter starts may take longer
    # than a program's timeout_s (the CPU time limit still applies).
    result = run_program(
        PROBE, dataclasses.replace(settings, timeout_s=max(settings.timeout_s, PROBE_TIMEOUT_S))
    )
    if not result.passed:
        raise SandboxUnavailableError(f"the sandbox probe did not pass: {result.reason}: {result.detail}")
    return {
        "sandboxed": result.sandboxed,
        "unsandboxed_reason": reason,
        "settings": dict(settings.__dict__),
        "observed": json.loads(result.output.strip().splitlines()[-1]),
    }
