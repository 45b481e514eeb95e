"""Every attack on the sandbox's walls that the HumanEval task card lists, tried for real: each must cost one
failed sample (or be harmless) and nothing else. Each is bounded in time and resources, so that a broken
sandbox fails a test instead of taking the machine down. Attacks on the judge (faked passes, forged
reports, kernel state between checks) are in test_sandbox_judge_attacks.py."""

from __future__ import annotations

import ctypes
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import time

import pytest

from tasks.humaneval import build_program
from tasks.sandbox import run_program, run_programs
from tests.sandbox_helpers import (
    PROJECT_ROOT,
    children_of,
    config_settings,
    descendants_of,
    harness_results,
    marker,
    needs_root,
    processes_named,
    rename_self,
    running,
    start_harness,
    wait_until,
)

pytestmark = needs_root

WRONG = "    return False\n"  # HumanEval/0 (has_close_elements): wrong for some of the check's cases
EXIT_PATHS = {
    "sys.exit(0)": "import sys; sys.exit(0)",
    "os._exit(0)": "import os; os._exit(0)",
    "raise SystemExit(0)": "raise SystemExit(0)",
    "exit()": "exit()",
    "atexit os._exit": "import atexit, os; atexit.register(os._exit, 0)",
    "SIGKILL self": "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
    "exec /bin/true": "import os; os.execv('/bin/true', ['true'])",
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "tracer": "import sys\ndef _t(frame, event, arg):\n    raise SystemExit(0)\nsys.settrace(_t)",
    "own check": "def check(candidate):\n    return None",
    "thread os._exit": "import os, threading, time\nthreading.Thread(target=lambda: (time.sleep(0.05), os._exit(0))).start()",
}
# Fake reports without the nonce, written to every descriptor and to the output, then a clean exit.
FORGED = (
    "import os\nfor _fd in range(1, 64):\n    try:\n"
    '        os.write(_fd, b\'0\' * 32 + b\' {"status": "passed", "reason": "passed", "detail": ""}\\n\')\n'
    "    except OSError:\n        pass\nos._exit(0)"
)


@pytest.fixture(scope="module")
def problem(humaneval_task) -> dict:
    return humaneval_task.samples(1)[0].meta


def _indent(code: str) -> str:
    return "".join(f"    {line}\n" for line in code.splitlines())


def test_no_exit_path_fakes_a_pass(problem):
    # Each path both from the program's top level (before the check exists) and from inside the candidate.
    completions = [WRONG + code + "\n" for code in [*EXIT_PATHS.values(), FORGED]]
    completions += [_indent(code) + WRONG for code in [*EXIT_PATHS.values(), FORGED]]
    results = run_programs(
        [build_program(problem, completion) for completion in completions], config_settings()
    )
    passed = [completion for completion, result in zip(completions, results) if result.passed]
    assert passed == []
    assert {result.reason for result in results} <= {"exit", "assertion", "exception", "signal", "protocol"}
    assert run_program(build_program(problem, problem["canonical_solution"]), config_settings()).passed


def test_time_limits_hold_inside_the_sandbox():
    # The wall clock: the init kills the program itself (the harness would only step in 10 s later).
    start = time.monotonic()
    sleeper = run_program("import time\ntime.sleep(60)\n", config_settings(timeout_s=1.0))
    assert sleeper.reason == "timeout" and time.monotonic() - start < 5.0
    # CPU time: SIGXCPU at the soft limit, and SIGKILL one second later when SIGXCPU is ignored.
    busy = "while True:\n    pass\n"
    stubborn = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\n" + busy
    results = run_programs([busy, stubborn], config_settings(timeout_s=30.0, cpu_time_limit_s=1))
    assert [result.reason for result in results] == ["cpu_time", "cpu_time"]
    assert [result.signal for result in results] == ["SIGXCPU", "SIGKILL"]


def test_memory_bombs_fail_with_memory():
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024 ** 2))\n"
    results = run_programs(
        ["blob = bytearray(8 * 1024 ** 3)\n", growing], config_settings(memory_limit_mb=256)
    )
    assert [result.reason for result in results] == ["memory", "memory"]


def test_fork_bomb_is_capped_and_leaves_nothing():
    name = marker()
    bomb = (
        rename_self(name)
        + "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    start = time.monotonic()
    result = run_program(bomb, config_settings(timeout_s=1.5))
    assert result.reason == "timeout" and time.monotonic() - start < 6.0
    assert processes_named(name) == []


def test_process_cap_is_private_to_the_check():
    settings = config_settings()
    # Exactly max_processes - 1 forks succeed (the runner is the first process): nobody else's processes
    # count, whatever runs on the machine.
    forks = (
        "import os, time\ncount = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n"
        "        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    count += 1\nprint(count)\n"
    )
    assert int(run_program(forks, settings).output) == settings.max_processes - 1
    # Others' processes: 40 of `nobody`, and leftovers holding the first uids of the reserved range.
    others = [subprocess.Popen(["sleep", "30"], user=65534) for _ in range(40)]
    others += [subprocess.Popen(["sleep", "30"], user=settings.uid_base + slot) for slot in range(3)]
    try:
        threads = (
            "import os, threading\nthreads = [threading.Thread(target=lambda: None) for _ in range(12)]\n"
            "[t.start() for t in threads]\n[t.join() for t in threads]\nprint(os.getuid())\n"
        )
        results = run_programs([threads] * 6, settings)
        assert [result.reason for result in results] == ["passed"] * 6
        assert all(int(result.output) >= settings.uid_base + 3 for result in results)  # occupied uids skipped
    finally:
        for process in others:
            process.kill()
            process.wait()


def test_nothing_the_program_starts_outlives_it():
    name = marker()
    daemon = (
        rename_self(name) + "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
        "    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\n"
    )
    assert run_program(daemon, config_settings()).passed
    assert processes_named(name) == []


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _signal_state(pid: int) -> str:
    """The blocked and ignored signal masks of a process (for a failure message)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "; ".join(
                line.strip() for line in status if line.startswith(("SigBlk", "SigIgn", "State"))
            )
    except OSError as error:
        return str(error)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_killing_the_harness_kills_its_programs(how):
    name = marker()
    sleepers = (
        rename_self(name)
        + "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        break\ntime.sleep(60)\n"
    )
    # The harness starts as a shell would start it (default SIGINT, nothing blocked), whatever signal state
    # earlier tests left in this process: a child inherits an ignored SIGINT and a blocked signal mask.
    harness = start_harness(
        config_settings(timeout_s=60.0), [sleepers] * 3, preexec_fn=_default_signals
    )  # 2 workers, 1 queued
    try:
        assert wait_until(lambda: len(processes_named(name)) >= 8, 20), "the programs never started"
        bootstraps = children_of(harness.pid)
        assert len(bootstraps) == 2
        everything = descendants_of(harness.pid)  # bootstraps, inits, judges, candidates and their forks
        assert len(everything) >= 2 * 3 + 8  # 4 named processes per running program
        harness.send_signal(how)
        try:  # read its pipes while waiting: a harness blocked writing to a full pipe could not exit
            harness.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the harness outlived {how.name} by 10 s; signal state: {_signal_state(harness.pid)}"
            )
        assert wait_until(lambda: not any(running(pid) for pid in everything), 5), "outlived the harness"
        assert processes_named(name) == []
    finally:
        harness.kill()
        harness.wait()


def test_sysv_shared_memory_does_not_outlive_the_program():
    key = secrets.randbelow(2**30) + 1
    mb = 1024 * 1024
    program = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.shmget({key}, {64 * mb}, 0o1600))\n"
        f"print(libc.shmget({key + 1}, {2048 * mb}, 0o1600), ctypes.get_errno())\n"  # beyond the memory limit
    )
    result = run_program(program, config_settings(memory_limit_mb=1024))
    created, oversized = result.output.split("\n", 1)
    assert result.passed and int(created) >= 0 and oversized.split() == ["-1", "22"]  # EINVAL: over shmmax
    with open("/proc/sysvipc/shm") as handle:
        keys = [int(line.split()[0]) for line in list(handle)[1:]]
    assert key not in keys
    # The same call on the host does leave a segment behind, so the check above can fail.
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(key, 4096, 0o1600)
    assert shmid >= 0
    libc.shmctl(shmid, 0, None)  # IPC_RMID


def test_the_filesystem_is_minimal_and_read_only():
    host_only = [
        str(PROJECT_ROOT),
        str(PROJECT_ROOT / ".git"),
        "/work",
        "/root",
        "/home",
        "/old_root",
        __file__,
    ]
    name = f"leak-{secrets.token_hex(6)}"
    attempts = [
        "/x",
        "/usr/x",
        "/etc/passwd",
        "/sandbox/judge.py",
        f"/tmp/{name}",
        f"/dev/shm/{name}",
        "/dev/null",
    ]
    program = (
        "import json, os\nwrites = {}\n"
        f"for path in {attempts!r}:\n"
        "    try:\n        open(path, 'a').write('x')\n        writes[path] = 'ok'\n"
        "    except OSError as error:\n        writes[path] = error.errno\n"
        "def is_open(fd):\n    try:\n        return bool(os.fstat(fd))\n    except OSError:\n        return False\n"
        f"print(json.dumps({{'visible': [p for p in {host_only!r} if os.path.exists(p)], 'writes': writes,\n"
        "    'passwd': open('/etc/passwd').read(), 'root': sorted(os.listdir('/')),\n"
        "    'fds': [fd for fd in range(256) if is_open(fd)], 'env': sorted(os.environ)}))\n"
    )
    found = json.loads(run_program(program, config_settings()).output)
    assert found["visible"] == []
    system = {"bin", "sbin", "lib", "lib32", "lib64", "libx32", "usr"}
    assert set(found["root"]) - system == {"dev", "etc", "proc", "sandbox", "tmp"}
    assert [line.split(":")[0] for line in found["passwd"].splitlines()] == ["root", "sandbox", "judge"]
    writable = sorted(path for path, status in found["writes"].items() if status == "ok")
    assert writable == ["/dev/null", f"/dev/shm/{name}", f"/tmp/{name}"]
    assert found["fds"] == [0, 1, 2, 4, 5]  # stdin, the output, the judge's calls and the replies; no job
    assert found["env"] == ["HOME", "LANG", "PATH", "TMPDIR"]  # nothing of the harness's environment
    assert not os.path.exists(f"/tmp/{name}") and not os.path.exists(f"/dev/shm/{name}")  # private


def test_disk_and_output_floods_hit_their_limits():
    settings = config_settings()  # files of at most 16 MiB, tmpfs of 64 MiB
    fill = (
        "import errno\nfor index in range(100):\n    try:\n"
        "        open(f'/tmp/{index}', 'wb').write(bytes(15 * 1024 * 1024))\n"
        "    except OSError as error:\n        print(index, errno.errorcode[error.errno])\n        break\n"
    )
    flood = "while True:\n    print('x' * 65536)\n"
    filled, flooded = run_programs([fill, flood], settings)
    assert filled.passed and filled.output.split() == ["4", "ENOSPC"]
    assert flooded.reason == "file_size" and flooded.exception == "OSError"


def test_network_and_host_loopback_are_unreachable():
    with socket.socket() as server:  # a service on the host's loopback
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        program = (
            f"import socket\nfor address in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n    try:\n"
            "        socket.create_connection(address, timeout=2)\n        print('connected')\n"
            "    except OSError as error:\n        print('blocked', error.errno)\n"
        )
        result = run_program(program, config_settings())
    assert result.passed and [line.split()[0] for line in result.output.splitlines()] == ["blocked"] * 2


def test_inherited_lower_limits_are_respected():
    mb = 1024 * 1024

    def lower_limits():
        resource.setrlimit(resource.RLIMIT_FSIZE, (mb, mb))

    probe = "import resource\nprint(resource.getrlimit(resource.RLIMIT_FSIZE)[1])\n"
    big_write = "open('/tmp/big', 'wb').write(bytes(2 * 1024 * 1024))\n"
    harness = start_harness(config_settings(), [probe, big_write], preexec_fn=lower_limits)
    probed, wrote = harness_results(harness)
    assert int(probed["output"]) == mb
    assert (wrote["reason"], wrote["exception"]) == ("file_size", "OSError")
