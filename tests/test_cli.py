"""The `replicate` command line (issue 21): one console script with every command, help without torch, and
every wrong input answered with one clear line before any work (no model loads, no job starts); anything
that is not the project's own user error keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from replicate import cli
from replicate.errors import UserError
from replicate.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (
    "run",
    "report",
    "rescore",
    "bench",
    "search",
    "lossless",
    "gpu-check",
    "experiment",
    "numerics",
    "demo",
)


def replicate_command(*arguments: str, check_torch: bool = False) -> subprocess.CompletedProcess:
    """`python -m replicate <arguments>` in a fresh process (optionally failing if it imported torch)."""
    code = "import sys; from replicate.cli import main; status = main(sys.argv[1:])"
    if check_torch:
        code += "; assert 'torch' not in sys.modules, 'torch was imported'"
    return subprocess.run(
        [sys.executable, "-c", code + "; sys.exit(status)", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def failing(capsys, function, *args) -> str:
    """Run an entry point that must refuse its input: exit status 2, one `error:` line; returns stderr."""
    with pytest.raises(SystemExit) as exit_info:
        function(*args)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_the_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"replicate": "replicate.cli:console"}


def test_help_lists_every_command_without_importing_torch():
    result = replicate_command("--help", check_torch=True)
    assert result.returncode == 0, result.stderr
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS) == list(cli.COMMANDS)


@pytest.mark.parametrize("command,expected", [
    ("report", "--out OUT"),
    ("lossless", "(default: 32)"),
    ("numerics", "(default: 10)"),
    ("experiment", "--sweep-dir"),
    ("run", "n_samples="),
    ("bench", "n_prompts=4"),
    ("search", "search.strategy="),
])  # fmt: skip
def test_command_help_lists_options_with_defaults_without_torch(command, expected):
    result = replicate_command(command, "--help", check_torch=True)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and f"replicate {command}" in result.stdout


def test_every_command_resolves_to_an_entry_point_with_main():
    for command in cli.COMMANDS.values():
        assert callable(cli.entry_point(command))


def test_an_unknown_command_gets_did_you_mean(capsys):
    assert cli.main(["reprot", "outputs"]) == 2
    assert "unknown command 'reprot'; did you mean report?" in capsys.readouterr().err


def test_the_legacy_form_is_the_run_command(capsys, monkeypatch):
    """`python -m replicate key=value` runs `replicate run key=value` (here refused before Hydra starts)."""
    monkeypatch.setattr(sys, "argv", ["replicate"])
    err = failing(capsys, cli.main, ["model=tiny_llama", "n_samples=abc"])
    assert "n_samples must be an integer, got 'abc'" in err


# ---- only the project's own user errors become one line ----


def test_user_errors_are_one_line_and_other_errors_keep_their_traceback(capsys):
    def refuse():
        raise ConfigError("n_samples=-1: must be >= 1")

    assert "error: n_samples=-1: must be >= 1" in failing(capsys, cli.user_errors(refuse))
    for bug in (RuntimeError("boom"), KeyError("missing"), ValueError("bad math"), TypeError("oops")):

        def broken(bug=bug):
            raise bug

        with pytest.raises(type(bug)):
            cli.user_errors(broken)()


def test_the_traceback_switch_shows_user_errors_too(monkeypatch):
    monkeypatch.setenv("REPLICATE_TRACEBACK", "1")

    def refuse():
        raise UserError("bad")

    with pytest.raises(UserError):
        cli.user_errors(refuse)()


# ---- run: typed, misspelt keys, sweeps checked before the first job ----


def run_main(argv):
    from replicate.run.__main__ import main

    return main(argv)


@pytest.mark.parametrize("override", ["n_sample=3", "+n_sample=3"])
def test_a_misspelt_key_gets_did_you_mean_with_or_without_plus(capsys, override):
    err = failing(capsys, run_main, ["model=tiny_llama", override])
    assert "n_sample" in err and "did you mean n_samples?" in err and "To append" not in err


def test_a_misspelt_nested_key_gets_did_you_mean(capsys):
    err = failing(capsys, run_main, ["model=tiny_llama", "sampling.temprature=0.5"])
    assert "did you mean sampling.temperature?" in err


def test_an_unknown_group_option_lists_the_options(capsys):
    err = failing(capsys, run_main, ["model=tiny_lama"])
    assert "tiny_llama" in err and "model" in err


def test_a_multirun_checks_every_job_before_the_first_runs(capsys, monkeypatch, tmp_path):
    import replicate.tracking

    def started(*args, **kwargs):
        raise AssertionError("a job started before every job's config was checked")

    monkeypatch.setattr(replicate.tracking, "run_and_track", started)
    monkeypatch.setattr(sys, "argv", ["replicate"])
    err = failing(
        capsys,
        run_main,
        ["-m", "model=tiny_llama", "n_samples=1,abc", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
    )
    assert "job 1 of 2 (model=tiny_llama n_samples=abc" in err and "no job was started" in err
    assert not (tmp_path / "sweep").exists()


def test_skipping_every_sub_block_is_refused(capsys):
    err = failing(
        capsys, run_main, ["model=tiny_llama", "model.skip.attention=[0,1,2,3]", "model.skip.mlp=[0,1,2,3]"]
    )
    assert "skips every attention and MLP sub-block of the 4 layers" in err


def test_settings_that_cannot_take_effect_are_named():
    from replicate.config import compose_config, ineffective_settings, run_config

    config = run_config(
        compose_config(
            ["model=tiny_llama", "method=self_speculative", "sampling.top_p=0.5", "sampling.top_k=5",
             "method.max_draft_tokens=100", "max_new_tokens=4"]
        )
    )  # fmt: skip
    notes = ineffective_settings(config)
    assert len(notes) == 3
    assert "sampling.top_p=0.5 has no effect under greedy decoding" in notes[0]
    assert "sampling.top_k=5 has no effect" in notes[1]
    assert "method.max_draft_tokens=100 cannot take effect with max_new_tokens=4" in notes[2]
    sampled = run_config(
        compose_config(["model=tiny_llama", "sampling.temperature=0.7", "sampling.top_p=0.5"])
    )
    assert ineffective_settings(sampled) == []


def test_a_run_warns_by_name_about_settings_that_cannot_take_effect(caplog, tmp_path):
    import logging

    from replicate.config import compose_config
    from replicate.run.runner import run

    overrides = ["model=tiny_llama", "method=self_speculative", "sampling.top_p=0.5", "method.max_draft_tokens=100",
                 "max_new_tokens=4", "n_samples=1", "warmup.runs=0"]  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="replicate.run.runner"):
        run(compose_config(overrides), tmp_path)
    assert "sampling.top_p=0.5 has no effect under greedy decoding" in caplog.text
    assert "method.max_draft_tokens=100 cannot take effect with max_new_tokens=4" in caplog.text


# ---- bench: typed before any model loads ----


def bench_main(argv):
    from replicate.bench.run import main

    return main(argv)


@pytest.fixture
def no_model(monkeypatch):
    import replicate.bench.run
    import replicate.core.models

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(replicate.bench.run, "load_model", load)
    monkeypatch.setattr(replicate.core.models, "load_model", load)
    monkeypatch.setattr(sys, "argv", ["replicate"])


@pytest.mark.parametrize("override,message", [
    ("n_prompts=abc", "n_prompts must be an integer, got 'abc'"),
    ("+profile.repeatz=1", "unknown key profile.repeatz (known: context_length, max_draft_tokens, repeats, warmup); did you mean profile.repeats?"),
    ("profile.repeatz=1", "unknown key profile.repeatz (in profile.repeatz=1); did you mean profile.repeats?"),
    ("sections=[profile,speed]", "sections[1]='speed' is not one of"),
    ("repeats=0", "repeats=0 is not allowed: must be >= 1"),
    ("method=autoregressive", "pick one that drafts"),
])  # fmt: skip
def test_bench_config_is_checked_before_the_model_loads(capsys, no_model, override, message):
    assert message in failing(capsys, bench_main, ["model=tiny_llama", override])


def test_the_bench_python_api_checks_the_config_too(no_model, tmp_path):
    from replicate.bench.run import compose_bench_config, run_bench

    with pytest.raises(ConfigError, match="n_prompts=0"):
        run_bench(compose_bench_config(["model=tiny_llama", "n_prompts=0"]), tmp_path)


# ---- experiment, numerics, lossless, report and rescore options ----


def experiment_main(argv):
    from replicate.experiment import main

    return main(argv)


def test_experiment_check_types_every_job(capsys):
    err = failing(capsys, experiment_main, ["check", "table1", "n_samples=abc"])
    assert "experiment table1, job 0 of 12" in err and "n_samples must be an integer, got 'abc'" in err


@pytest.mark.parametrize("argv,message", [
    (["plan", "table3", "n_samples=abc"], "n_samples must be an integer"),
    (["plan", "tabel3"], "unknown experiment 'tabel3'; did you mean table3?"),
    (["plan"], "name an experiment"),
    (["plan", "table3", "n_sample=2"], "did you mean n_samples?"),
])  # fmt: skip
def test_experiment_plan_refuses_bad_input(capsys, argv, message):
    assert message in failing(capsys, experiment_main, argv)


def test_an_unknown_experiment_flag_is_refused_not_taken_for_an_override(capsys):
    assert "unrecognized arguments: --smokey" in failing(
        capsys, experiment_main, ["plan", "table3", "--smokey"]
    )


@pytest.mark.parametrize("argv,message", [
    (["--prompts", "0"], "argument --prompts: must be an integer >= 1, got 0"),
    (["--prompts", "many"], "argument --prompts: must be an integer >= 1, got 'many'"),
    (["--model", "smollm3"], "unknown model 'smollm3'"),
    (["--new-tokens", "1"], "--new-tokens=1: at least 2"),
])  # fmt: skip
def test_numerics_refuses_bad_options_before_loading(capsys, monkeypatch, argv, message):
    import replicate.core.models
    from replicate.numerics import main

    monkeypatch.setattr(replicate.core.models, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    assert message in failing(capsys, main, argv)


@pytest.mark.parametrize("decoder,message", [
    ("not a decoder", "neither an existing path nor module:callable"),
    ("no_such_module_x:decode", "no module 'no_such_module_x'"),
    ("replicate.core.decoding:no_such_function", "has no callable 'no_such_function'"),
    (".", "must be a directory holding custom_generate/generate.py"),
])  # fmt: skip
def test_lossless_decoder_is_checked_before_the_gate_runs(capsys, monkeypatch, decoder, message):
    import replicate.lossless.cli

    monkeypatch.setattr(replicate.lossless.cli, "check", lambda *a, **k: pytest.fail("the gate ran"))
    assert message in failing(capsys, replicate.lossless.cli.main, ["--decoder", decoder])


@pytest.mark.parametrize("argv,message", [
    (["{tmp}", "--entity", "me"], "--entity only acts with --wandb-report"),
    (["{tmp}/missing"], "is not a directory"),
    (["{tmp}", "--out", "{tmp}/file"], "is a file; name a directory"),
])  # fmt: skip
def test_report_options_are_checked(capsys, tmp_path, argv, message):
    from replicate.report.write import main

    (tmp_path / "file").write_text("")
    assert message in failing(capsys, main, [a.format(tmp=tmp_path) for a in argv])


def test_rescore_refuses_a_missing_directory(capsys, tmp_path):
    from replicate.rescore import main

    assert "is not a directory" in failing(capsys, main, [str(tmp_path / "missing")])


# ---- the Python API and the transformers wrapper ----


@pytest.fixture(scope="module")
def tiny():
    import replicate

    return replicate.load("tiny_llama")


@pytest.mark.parametrize("prompt,message", [
    (None, "prompt must be a string, got None"),
    (["def f():"], "prompt must be a string"),
])  # fmt: skip
def test_the_python_api_checks_the_prompt(tiny, prompt, message):
    import replicate

    with pytest.raises(ConfigError, match=message):
        replicate.generate(tiny, prompt, max_new_tokens=4)


def test_the_python_api_checks_the_model_and_warns_about_ignored_filters(tiny):
    import replicate

    with pytest.raises(ConfigError, match="needs a model from replicate.load"):
        replicate.generate("tiny_llama", "def f():")
    with pytest.warns(UserWarning, match="top_p=0.5 has no effect under greedy"):
        replicate.make_decoder(tiny, "self_speculative", top_p=0.5)


@pytest.mark.parametrize("kwargs,message", [
    ({"skip_attention": "1,2"}, "skip_attention must be a list of decoder layer ids"),
    ({"skip_attention": [1], "max_draft_tokens": "4"}, "max_draft_tokens must be an integer"),
    ({"skip_attention": [1], "decode_results": {}}, "decode_results must be a list"),
])  # fmt: skip
def test_the_transformers_wrapper_checks_its_arguments(tiny, kwargs, message):
    """(A misspelt keyword, e.g. max_draft_token=4, is refused by transformers' generate itself, by name.)"""
    import torch

    import replicate.hf as hf

    prompt = torch.tensor([[256, 10, 20, 30]])
    with pytest.raises(ConfigError, match=message):
        tiny.model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, pad_token_id=0,
            max_new_tokens=4, custom_generate=hf.self_speculative_generate, **kwargs,
        )  # fmt: skip


def test_the_transformers_wrapper_warns_when_every_sub_block_is_skipped(tiny):
    """Skipping everything stays lossless (the gate's matrix decodes it on purpose) but cannot be faster."""
    import torch

    import replicate.hf as hf

    prompt = torch.tensor([[256, 10, 20, 30]])
    every = [0, 1, 2, 3]
    with pytest.warns(UserWarning, match="skips every attention and MLP sub-block of the 4 layers"):
        tiny.model.generate(
            input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False, pad_token_id=0,
            max_new_tokens=4, custom_generate=hf.self_speculative_generate, skip_attention=every, skip_mlp=every,
        )  # fmt: skip
