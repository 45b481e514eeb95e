"""The lossless gate for users' decoders (`replicate.lossless.check`, the `lossless_check` fixture, the CLI
and the composite action): a correct decoder passes the whole tiny matrix; broken ones fail at their first
divergence, named with its position, both tokens and the full model's logit margin there."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import yaml

import replicate.hf as hf
from replicate import lossless
from replicate.core.decoding import (
    DecodeSettings,
    Speculation,
    autoregressive_decode,
    self_speculative_decode,
)
from replicate.core.draft_exit import StaticThreshold
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import skip_sublayers
from replicate.gate import LosslessError, decoder_kind, divergence, reference_tokens, run_decoder, tiny_cases

pytest_plugins = ["replicate.testing"]
pytestmark = pytest.mark.lossless
ROOT = Path(__file__).resolve().parents[1]


def unverified_drafts(model, prompt_ids, max_new_tokens, eos_token_ids, plan):
    """Broken on purpose: keeps the draft model's tokens without verifying them."""
    with skip_sublayers(model, plan):
        return autoregressive_decode(
            model, prompt_ids, DecodeSettings(max_new_tokens, eos_token_ids=eos_token_ids)
        ).tokens


def ignores_eos(model, prompt_ids, max_new_tokens, eos_token_ids):
    """Broken on purpose: never stops at EOS."""
    return autoregressive_decode(model, prompt_ids, DecodeSettings(max_new_tokens)).tokens


def test_a_correct_decoder_passes_the_tiny_matrix(lossless_check):
    """The project's own transformers integration (the paper's adaptive draft-exit) as the correct decoder:
    this is also the tiny-matrix identity test of `replicate.hf`."""
    results = []
    summary = lossless_check(
        hf.self_speculative_generate, models=["tiny_llama"], options={"decode_results": results}
    )
    assert summary.cases == len(results) == 20 and summary.tokens > 500
    drafted, accepted = sum(sum(r.drafted) for r in results), sum(sum(r.accepted) for r in results)
    assert 0 < accepted < drafted  # both the accepting and the rejecting paths ran


def test_a_correct_decode_function_passes():
    """A plain decode function (the core loop), on the EOS and budget cases and the first matrix models."""

    def decoder(model, prompt_ids, max_new_tokens, eos_token_ids, plan):
        settings = DecodeSettings(max_new_tokens, SamplingConfig(), eos_token_ids)
        return self_speculative_decode(
            model, prompt_ids, settings, Speculation(plan, 4, StaticThreshold(0.0))
        )

    for case in itertools.islice(tiny_cases(), 10):
        expected = reference_tokens(case.model, case.prompt_ids, case.max_new_tokens, case.eos_token_ids)
        tokens, result = run_decoder(decoder, "decode", case, {})
        assert divergence(case, tokens, expected) is None and result.tokens == tokens


def test_a_decoder_that_skips_verification_fails_at_its_first_divergence(lossless_check):
    with pytest.raises(LosslessError) as failure:
        lossless_check(unverified_drafts, models=["tiny_llama"])
    divergence = failure.value.divergence
    assert divergence.case == "tiny EOS at new token 0"  # the first case
    assert divergence.decoder_token != divergence.reference_token and divergence.margin > 0
    message = str(failure.value)
    assert f"first difference at new token {divergence.position}" in message
    assert f"margin there is {divergence.margin:.4g}" in message


def test_a_decoder_that_ignores_eos_fails_naming_it(lossless_check):
    with pytest.raises(LosslessError, match="EOS or max_new_tokens not honoured"):
        lossless_check(ignores_eos, models=["tiny_llama"])


def test_kinds_and_bad_input():
    assert decoder_kind(hf.self_speculative_generate) == "custom_generate"
    assert decoder_kind(hf.CUSTOM_GENERATE_PATH) == "custom_generate_path"
    assert decoder_kind(ignores_eos) == "decode"
    with pytest.raises(ValueError, match="choose from tiny_llama, smollm2_135m"):
        lossless.check(ignores_eos, models=["llama2_13b"])
    with pytest.raises(TypeError, match="must return the new token ids"):
        lossless.check(
            lambda model, prompt_ids, max_new_tokens, eos_token_ids: torch.zeros(3), ["tiny_llama"]
        )


def test_the_cli_and_the_composite_action(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # `module:callable` is imported from the current directory
    assert lossless.main(["--decoder", "tests.test_gate:ignores_eos", "--models", "tiny_llama"]) == 1
    assert "NOT LOSSLESS: not lossless: tiny EOS at new token 0" in capsys.readouterr().err
    action = yaml.safe_load((ROOT / ".github/actions/lossless/action.yml").read_text())
    assert action["runs"]["using"] == "composite" and {"decoder", "models"} <= set(action["inputs"])
    commands = " ".join(step.get("run", "") for step in action["runs"]["steps"])
    assert "-m replicate.lossless --decoder" in commands and "--models" in commands


@pytest.mark.slow
def test_smollm2_cases_pass_with_the_projects_decoder(lossless_check):
    assert lossless_check(hf.self_speculative_generate, models=["smollm2_135m"]).cases == 3
