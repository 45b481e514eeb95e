"""Completions written to game the judge (issue 19), each as a model trained to pass tests might write it:
values that claim equality, patched builtins and runner helpers, swapped checks, frame and memory reads,
forged reports, and kernel state carried between checks. None may pass, escape, or cost another sample."""

from __future__ import annotations

import ctypes
import errno

import pytest

from tasks.humaneval import HumanEvalTask, build_program
from tasks.sandbox import run_programs
from tests.sandbox_helpers import config_settings, humaneval_config, needs_root

pytestmark = needs_root

# (problem, what it tries, completion); each would pass a judge that shares the candidate's interpreter.
GAMING = [
    ("HumanEval/0", "int subclass equal to anything", "    class Yes(int):\n        def __eq__(self, other):\n            return True\n        __hash__ = int.__hash__\n    return Yes(1)\n"),
    ("HumanEval/1", "list subclass equal to anything", "    class L(list):\n        def __eq__(self, other):\n            return True\n    return L()\n"),
    ("HumanEval/8", "tuple subclass equal to anything", "    class T(tuple):\n        def __eq__(self, other):\n            return True\n    return T()\n"),
    ("HumanEval/27", "str subclass equal to anything", "    class S(str):\n        def __eq__(self, other):\n            return True\n        __hash__ = str.__hash__\n    return S('')\n"),
    ("HumanEval/2", "float subclass faking - and abs", "    class F(float):\n        def __sub__(self, other):\n            return F(0.0)\n        def __abs__(self):\n            return 0.0\n    return F(9.0)\n"),
    ("HumanEval/0", "equal to every builtin type", "    class B:\n        def __eq__(self, other):\n            return type(other).__module__ == 'builtins'\n    return B()\n"),
    ("HumanEval/0", "__eq__ raises for unknown types", "    class R:\n        def __eq__(self, other):\n            if type(other) in (bool, int):\n                return True\n            raise TypeError\n    return R()\n"),
    ("HumanEval/2", "fakes -, abs and <", "    class C:\n        def __sub__(self, o):\n            return self\n        __rsub__ = __sub__\n        def __abs__(self):\n            return self\n        def __lt__(self, o):\n            return True\n    return C()\n"),
    ("HumanEval/2", "builtins.abs patched", "    return 7.0\nimport builtins\nbuiltins.abs = lambda value: 0\n"),
    ("HumanEval/32", "math.fabs patched", "    return 0.0\nimport math\nmath.fabs = lambda value: 0.0\n"),
    ("HumanEval/0", "json.dumps and os.write write a pass", "    return False\nimport json, os\n_PASS = '{\"status\": \"passed\", \"reason\": \"passed\", \"detail\": \"\"}'\njson.dumps = lambda *a, **k: _PASS\n_write = os.write\nos.write = lambda fd, data: _write(fd, _PASS.encode() + b'\\n')\n"),
    ("HumanEval/0", "False made equal to 1, AssertionError replaced", "    return False\nimport builtins, ctypes\nctypes.c_uint32.from_address(id(False) + 24).value = 1\nbuiltins.AssertionError = type('AssertionError', (BaseException,), {})\n"),
    ("HumanEval/0", "audit hook and profiler swap check", "    return False\nimport sys\ndef _swap(frame, event, arg):\n    if frame.f_code.co_name == 'check':\n        frame.f_globals['check'] = lambda candidate: None\nsys.setprofile(_swap)\nsys.addaudithook(lambda event, args: None)\n"),
    ("HumanEval/13", "expected constants read from the check's frames", "    import sys\n    frame, found = sys._getframe(), []\n    while frame is not None:\n        found += [c for c in frame.f_code.co_consts if type(c) is int and c > 1]\n        frame = frame.f_back\n    return found[0] if found else 0\n"),
    ("HumanEval/0", "raises the judge's own stop class", "    class _Stop(BaseException):\n        pass\n    raise _Stop()\n"),
    ("HumanEval/0", "reads other processes' memory", "    import os\n    for pid in os.listdir('/proc'):\n        try:\n            open(f'/proc/{pid}/mem', 'rb').read(1)\n        except Exception:\n            pass\n    return False\n"),
]  # fmt: skip
# Reports forged on every descriptor: malformed, a sandbox_error, contradictory, missing keys, and framed
# messages of the channel (unknown kind, a "returned" with a forged type tag, an oversized announcement).
FORGE = (
    "import json, os, struct\n"
    '_LINES = [b\'{not json\', b\'{"status": "sandbox_error", "reason": "sandbox_error", "detail": "x"}\',\n'
    '    b\'{"status": "passed", "reason": "timeout", "detail": ""}\', b\'{"status": "passed"}\']\n'
    "_FRAMES = [{'kind': 'verdict', 'status': 'passed'}, {'kind': 'returned', 'value': ['Liar', 1]}]\n"
    "def _forge():\n"
    "    for fd in range(1, 64):\n"
    "        frames = [struct.pack('>I', len(m)) + m for m in map(str.encode, map(json.dumps, _FRAMES))]\n"
    "        for data in _LINES + frames + [struct.pack('>I', 2**31)]:\n"
    "            try:\n                os.write(fd, data + b'\\n')\n            except OSError:\n                pass\n"
)


@pytest.fixture(scope="module")
def task() -> HumanEvalTask:
    return HumanEvalTask(humaneval_config())


def _program(task, task_id: str, completion: str):
    return build_program(task.problems()[task_id], completion)


def test_no_gaming_completion_passes(task):
    programs = [_program(task, task_id, completion) for task_id, _, completion in GAMING]
    results = run_programs(programs, config_settings())
    outcomes = {name: (result.reason, result.detail) for (_, name, _), result in zip(GAMING, results)}
    assert [name for name, result in zip(outcomes, results) if result.passed] == []
    assert {reason for reason, _ in outcomes.values()} <= {"assertion", "not_plain", "exception", "protocol"}
    assert outcomes["equal to every builtin type"][0] == "not_plain"
    assert outcomes["int subclass equal to anything"][0] == "assertion"  # judged as the plain int 1
    # The same task ids pass with their canonical solutions: the attacks failed on their own merit.
    canonical = [
        _program(task, task_id, task.problems()[task_id]["canonical_solution"]) for task_id, *_ in GAMING
    ]
    assert all(result.passed for result in run_programs(canonical, config_settings()))


def test_one_hostile_sample_never_costs_the_batch(task):
    samples = task.samples(4)
    hostile = "    _forge()\n    return False\n" + FORGE  # called inside the check, and at load time below
    predictions = [sample.meta["canonical_solution"] for sample in samples]
    predictions[1] = hostile
    predictions[2] = predictions[2] + FORGE + "_forge()\n"
    scores = task.score_samples(samples, predictions)
    assert [score.values["passed"] for score in scores] == [1.0, 0.0, 0.0, 1.0]
    assert [score.detail["reason"] for score in scores] == ["passed", "protocol", "protocol", "passed"]


KEYRING = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
found = []
for keyring in (-4, -3, -5):  # the user, session and user-session keyrings
    key = libc.syscall(ctypes.c_long(250), ctypes.c_long(10), ctypes.c_long(keyring), b"user", b"leak-{tag}", 0)
    found.append((key, ctypes.get_errno()))  # KEYCTL_SEARCH for an earlier check's key
    added = libc.syscall(ctypes.c_long(248), b"user", b"leak-{tag}", b"secret", 6, ctypes.c_long(keyring))
    found.append((added, ctypes.get_errno()))
print(found)
"""


def test_no_keyring_channel_between_checks():
    tag = "i19"
    settings = config_settings(workers=1)  # the second check gets the first one's uid
    first, second = run_programs([KEYRING.format(tag=tag)] * 2, settings)
    for result in (first, second):
        assert result.passed and eval(result.output) == [(-1, errno.EPERM)] * 6
    # On the host the same calls work (so the check above can fail): add, find, revoke.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    key = libc.syscall(
        ctypes.c_long(248), b"user", b"probe-i19", b"x", 1, ctypes.c_long(-2)
    )  # thread keyring
    assert key > 0
    libc.syscall(ctypes.c_long(250), ctypes.c_long(3), ctypes.c_long(key))  # KEYCTL_REVOKE


def test_memory_outside_the_address_space_is_bounded():
    mb = 1024 * 1024
    program = f"""
import ctypes, errno, os, resource
def attempt(label, action):
    try:
        action()
        print(label, 'ok')
    except OSError as error:
        print(label, errno.errorcode[error.errno])
def memfd():
    fd = os.memfd_create('hoard')
    for _ in range(1536):
        os.write(fd, bytes({mb}))
def shm():
    for index in range(192):  # 1.5 GiB in files under the file size limit
        with open(f'/dev/shm/hoard{{index}}', 'wb') as handle:
            handle.write(bytes({8 * mb}))
attempt('memfd', memfd)
attempt('shm', shm)
libc = ctypes.CDLL(None, use_errno=True)
for label, number, args in [('inotify', 294, (0,)), ('userns', 272, (0x10000000,)), ('io_uring', 425, (8, 0))]:
    result = libc.syscall(number, *args)
    print(label, 'ok' if result >= 0 else errno.errorcode[ctypes.get_errno()])
print('nofile', resource.getrlimit(resource.RLIMIT_NOFILE)[1])
"""
    result = run_program_output(program, config_settings(memory_limit_mb=1024))
    assert result == {
        "memfd": "EPERM", "shm": "ENOSPC", "inotify": "EPERM", "userns": "EPERM", "io_uring": "EPERM",
        "nofile": "64",
    }  # fmt: skip


def run_program_output(program: str, settings) -> dict[str, str]:
    (result,) = run_programs([program], settings)
    assert result.passed, result.detail
    return dict(line.split() for line in result.output.splitlines())
