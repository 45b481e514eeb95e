"""HumanEval scoring through the sandbox: correct programs pass, wrong ones fail with a machine-readable
reason, results keep their order, settings are checked, and a missing sandbox fails loudly unless the
explicit opt-in runs programs unsandboxed (and says so). The attacks are in test_sandbox_attacks.py."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tasks.humaneval import _score as score_result
from tasks.humaneval import build_program
from tasks.sandbox import (
    REASONS,
    ExecutionResult,
    Program,
    SandboxError,
    SandboxSettings,
    SandboxUnavailableError,
    describe_sandbox,
    harness,
    run_program,
    run_programs,
    uids,
    verdicts,
)
from tests.sandbox_helpers import (
    config_settings,
    harness_results,
    humaneval_config,
    marker,
    needs_root,
    processes_named,
    rename_self,
    start_harness,
)


@pytest.fixture(scope="module")
def settings() -> SandboxSettings:
    return config_settings()


@needs_root
def test_describe_sandbox_reports_every_protection(settings):
    described = describe_sandbox(settings)
    observed = described["observed"]
    assert described["sandboxed"] is True and described["unsandboxed_reason"] is None
    assert settings.uid_base <= observed["uid"] < settings.uid_base + settings.uid_slots
    assert observed["interfaces"] == ["lo"]  # new network namespace: the host's interfaces are gone
    assert observed["hostname"] == "sandbox"  # new UTS namespace
    assert len(observed["visible_pids"]) == 1  # new PID namespace; the init (root) and the judge are hidden
    assert observed["cwd"] == "/tmp" and observed["executable"].startswith("/usr/")
    assert {"work", "root", "home"}.isdisjoint(observed["root_entries"])
    assert observed["rlimits"]["RLIMIT_NPROC"] == [settings.max_processes] * 2


@needs_root
def test_canonical_solutions_pass_and_wrong_ones_fail_with_reason(humaneval_task):
    task = humaneval_task
    samples = task.samples(4)
    results = task.execute(samples, [sample.meta["canonical_solution"] for sample in samples])
    assert [result.reason for result in results] == ["passed"] * 4
    assert all(result.sandboxed for result in results)
    wrong = task.execute(samples[:1], ["    return None\n"])[0]
    assert (wrong.status, wrong.reason, wrong.exception) == ("failed", "assertion", "AssertionError")
    assert wrong.as_record()["reason"] == "assertion" and set(wrong.as_record()) >= {
        "status",
        "detail",
        "sandboxed",
    }
    assert task.score_sample(samples[0], "    return None\n") == {"passed": 0.0}
    (score,) = task.score_samples(samples[:1], [samples[0].meta["canonical_solution"]])
    assert (
        score.values == {"passed": 1.0} and score.detail["reason"] == "passed" and score.detail["sandboxed"]
    )


@pytest.mark.slow
@needs_root
def test_all_canonical_solutions_pass(humaneval_task):
    task = humaneval_task
    samples = task.samples()
    results = task.execute(samples, [sample.meta["canonical_solution"] for sample in samples])
    assert len(samples) == 164
    assert [
        (sample.id, result.as_record()) for sample, result in zip(samples, results) if not result.passed
    ] == []


@needs_root
def test_results_keep_input_order_with_reasons(settings):
    programs = [
        "pass\n",
        "raise ValueError('bad')\n",
        "import sys\nsys.exit(3)\n",
        Program("def f():\n    return 1\n", "f", judge="def check(c):\n    assert c() == 2\n"),
        Program("def f():\n    return 1\n", "f", judge=""),
        "print('ok')\n",
    ]
    results = run_programs(programs, settings)
    assert [result.reason for result in results] == [
        "passed",
        "exception",
        "exit",
        "assertion",
        "exception",
        "passed",
    ]
    assert results[1].exception == "ValueError" and results[1].detail == "ValueError: bad"
    assert "ValueError: bad" in results[1].output  # the traceback, for people
    assert results[2].detail == "SystemExit(3) before the check completed"
    assert "defines no function 'check'" in results[4].detail


@needs_root
def test_a_checkout_under_tmp_works(settings, tmp_path, monkeypatch):
    """CI clones into /tmp, and the new root is mounted on /tmp in the sandbox's mount namespace: a runner
    that lies under /tmp must still reach the sandbox (CI failed on this)."""
    assert str(tmp_path).startswith("/tmp/")
    scripts = {}
    for name, path in harness.SCRIPTS.items():
        scripts[name] = str(tmp_path / f"{name}.py")
        Path(scripts[name]).write_bytes(Path(path).read_bytes())
    monkeypatch.setattr(harness, "SCRIPTS", scripts)
    results = run_programs(["pass\n", "raise ValueError('bad')\n"], settings)
    assert [(result.reason, result.sandboxed) for result in results] == [
        ("passed", True),
        ("exception", True),
    ]


def test_an_interpreter_under_tmp_is_refused_by_name(settings, tmp_path):
    """The program's private /tmp would cover an interpreter installed there: say so instead of failing inside."""
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python3"
    python.write_bytes(Path(os.path.realpath(settings.python)).read_bytes())
    python.chmod(0o755)
    with pytest.raises(SandboxUnavailableError, match=r"execution.python=.*lies under /tmp"):
        harness.interpreter(str(python))


@needs_root
def test_an_assertion_raised_by_the_candidate_is_an_exception_not_a_failed_check(settings):
    source = "def f():\n    assert False, 'inside'\n"
    result = run_program(Program(source, "f", judge="def check(c):\n    c()\n"), settings)
    assert (result.reason, result.exception) == ("exception", "AssertionError")


def test_settings_are_checked_with_the_key_named():
    execution = humaneval_config()["execution"]
    with pytest.raises(ValueError, match=r"missing \['workers'\]"):
        SandboxSettings.from_config({k: v for k, v in execution.items() if k != "workers"})
    with pytest.raises(ValueError, match=r"unknown \['run_as_user'\]"):
        SandboxSettings.from_config({**execution, "run_as_user": "nobody"})
    for key, value in [
        ("timeout_s", 0),
        ("max_processes", "16"),
        ("uid_base", 1000),
        ("allow_unsandboxed", 1),
    ]:
        with pytest.raises(ValueError, match=f"execution.{key}"):
            SandboxSettings.from_config({**execution, key: value})
    with pytest.raises(ValueError, match=r"uid_slots=3 must be >= 2 \* workers=2"):
        SandboxSettings.from_config({**execution, "uid_slots": 3})


def test_a_uid_range_used_by_an_account_is_refused(settings, monkeypatch):
    account = type("Entry", (), {"pw_name": "taken", "pw_uid": settings.uid_base + 3})()
    monkeypatch.setattr(uids.pwd, "getpwall", lambda: [account])
    with pytest.raises(SandboxUnavailableError, match=r"accounts \['taken'\]"):
        uids.check_range(settings)


def test_results_are_classified_from_the_reports():
    settings = config_settings(cpu_time_limit_s=2)
    candidate = '{"wait_status": %d, "cpu_s": %s}'
    ended = (
        '{"event": "ended", "timed_out": false, "judge": {"wait_status": 0, "cpu_s": 0.1}, "candidate": %s}'
    )

    def classify(status_lines, report_lines=()):
        report = verdicts.SandboxReport(status_lines, list(report_lines), "", False, 0.1, True)
        return verdicts.classify(report, settings)

    passed = ended % (candidate % (0, 0.1))
    assert classify([passed], ['{"status": "passed", "reason": "passed", "detail": ""}']).passed
    gone = '{"status": "failed", "reason": "exit", "detail": "", "candidate_ended": true}'
    for status, cpu_s, reason in [(signal.SIGKILL, 2.5, "cpu_time"), (signal.SIGKILL, 0.5, "signal"),
                                  (signal.SIGXFSZ, 0.5, "file_size"), (3 << 8, 0.1, "exit")]:  # fmt: skip
        assert classify([ended % (candidate % (status, cpu_s))], [gone]).reason == reason
    assert classify([passed]).reason == "protocol"  # the judge ended without a verdict
    assert classify([]).status == "sandbox_error"  # the bootstrap died without a word
    run_error = classify(['{"event": "error", "stage": "run", "message": "fork failed"}'])
    assert (run_error.status, run_error.reason) == ("sandbox_error", "sandbox_error")
    with pytest.raises(SandboxUnavailableError, match="could not be set up: OSError: no mount"):
        classify(['{"event": "error", "stage": "setup", "message": "OSError: no mount"}'])


def test_results_refuse_contradictions_and_sandbox_errors_refuse_to_score(humaneval_task):
    with pytest.raises(ValueError, match="contradicts"):
        ExecutionResult("passed", "timeout", "", 0.0, True)
    assert set(REASONS) >= {"passed", "assertion", "exception", "timeout", "memory", "exit", "sandbox_error"}
    sample = humaneval_task.samples(1)[0]
    error = ExecutionResult("sandbox_error", "sandbox_error", "bootstrap died", 0.1, True)
    with pytest.raises(SandboxError, match="HumanEval/0: bootstrap died"):
        score_result(sample, error)


def test_without_namespaces_the_sandbox_refuses_and_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(harness, "missing_requirement", lambda: "root privileges (running as uid 1000)")
    monkeypatch.setattr(harness, "_availability", {})
    with pytest.raises(SandboxUnavailableError, match=r"needs root privileges .*allow_unsandboxed: true"):
        run_program("pass\n", config_settings())
    with pytest.raises(SandboxUnavailableError, match="needs root privileges"):
        describe_sandbox(config_settings())


@needs_root
def test_the_explicit_opt_in_runs_unsandboxed_and_says_so(monkeypatch):
    monkeypatch.setattr(harness, "missing_requirement", lambda: "root privileges (running as uid 1000)")
    monkeypatch.setattr(harness, "_availability", {})
    settings = config_settings(allow_unsandboxed=True, timeout_s=2.0)
    name = marker()
    daemon = rename_self(name) + "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    programs = [
        "import os; print(os.getuid())\n",
        "import os; os._exit(0)\n",
        Program("def f():\n    return 1\n", "f", judge="def check(c):\n    assert c() == 2\n"),
        daemon,
    ]
    results = run_programs(programs, settings)
    assert [result.sandboxed for result in results] == [False] * 4
    assert [result.reason for result in results] == ["passed", "exit", "assertion", "passed"]
    uid = int(results[0].output)  # as root, even unsandboxed, each program runs as a uid of its own
    assert settings.uid_base <= uid < settings.uid_base + settings.uid_slots
    assert processes_named(name) == []  # the subreaper killed the daemon
    described = describe_sandbox(settings)
    assert described["sandboxed"] is False and "root privileges" in described["unsandboxed_reason"]


@needs_root
def test_an_unprivileged_harness_refuses_unless_opted_in_and_then_records_it():
    python = config_settings().python  # a harness as `nobody` cannot use an interpreter under /root
    readable = subprocess.run(
        [python, "-c", f"import os; os.listdir({harness._HERE!r})"], user=65534, check=False
    )
    if readable.returncode != 0:
        pytest.skip("the checkout is not readable by nobody")
    refused = start_harness(config_settings(), ["pass\n"], python=python, user=65534)
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert "needs root privileges (running as uid 65534)" in stderr and "allow_unsandboxed: true" in stderr
    name = marker()
    daemon = rename_self(name) + "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    programs = ["import os; print(os.getuid())\n", "import os; os._exit(0)\n", "assert 1 == 2\n", daemon]
    allowed = start_harness(config_settings(allow_unsandboxed=True), programs, python=python, user=65534)
    results = harness_results(allowed)
    assert [(result["sandboxed"], result["reason"]) for result in results] == [
        (False, "passed"), (False, "exit"), (False, "exception"), (False, "passed")
    ]  # fmt: skip
    assert results[0]["output"].strip() == "65534"
    assert processes_named(name) == []  # the subreaper killed the daemon


@needs_root
def test_a_missing_interpreter_is_named(settings):
    with pytest.raises(
        SandboxUnavailableError, match="/nonexistent/python3 is not an executable interpreter"
    ):
        run_program("pass\n", dataclasses.replace(settings, python="/nonexistent/python3"))


def test_build_program_splits_the_program_between_candidate_and_judge():
    problem = {"prompt": "def f():\n", "test": "def check(c):\n    assert c() == 1\n", "entry_point": "f"}
    assert build_program(problem, "    return 1\n") == Program(
        "def f():\n    return 1\n\n", "f", judge="def f():\n\ndef check(c):\n    assert c() == 1\n\n"
    )
    with pytest.raises(ValueError, match="needs the judge's code"):
        Program("def f():\n    return 1\n", "f")
    assert set(harness.SCRIPTS) == {"judge", "candidate", "channel"}
