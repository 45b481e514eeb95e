"""transformers integration: `model.generate(custom_generate=replicate.hf.self_speculative_generate)` and the
`custom_generate/` directory give greedy tokens identical to plain `generate`, honour streamer, EOS,
max_new_tokens and stopping criteria, and refuse what they do not support with a clear message."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation import GenerateDecoderOnlyOutput

import replicate.hf as hf
from replicate.core.draft_exit import AdaptiveThreshold
from replicate.core.sampling import SamplingConfig
from replicate.core.skipping import SkipPlan
from replicate.hf.settings import sampling_config
from replicate.lossless.gate import check
from tests.helpers import TinyModel, tiny_model

pytestmark = pytest.mark.lossless
PLAN = SkipPlan((1,), (2,))
SKIP = {"skip_attention": [1], "skip_mlp": [2]}


@pytest.fixture(scope="module")
def model():
    return tiny_model(TinyModel(4, 4, 2, 320, "sdpa", PLAN.attention, PLAN.mlp), seed=3)


@pytest.fixture
def prompt():
    return torch.tensor([[256, 10, 20, 30, 40]])


def plain(model, prompt, do_sample=False, **kwargs):
    return model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        do_sample=do_sample,
        pad_token_id=0,
        **kwargs,
    )


def speculative(model, prompt, **kwargs):
    return plain(model, prompt, custom_generate=hf.self_speculative_generate, **kwargs)


# The paper's method on every case of the lossless gate's tiny matrix: tests/test_gate.py (the correct decoder).


@pytest.mark.slow
def test_fixed_draft_length_equals_generate_on_the_tiny_matrix():
    summary = check(
        hf.self_speculative_generate, ["tiny_llama"], {"method": "self_speculative", "max_draft_tokens": 4}
    )
    assert summary.cases == 20


@pytest.mark.parametrize("settings", [
    {"method": "self_speculative", "max_draft_tokens": 1},
    {"method": "self_speculative", "max_draft_tokens": 12, "threshold": 0.5},
    {"max_draft_tokens": 5, "initial_threshold": 0.9, "target_acceptance": 0.5},
])  # fmt: skip
def test_method_settings_keep_greedy_output(model, prompt, settings):
    results = []
    output = speculative(model, prompt, max_new_tokens=30, decode_results=results, **SKIP, **settings)
    assert torch.equal(output, plain(model, prompt, max_new_tokens=30))
    drafted, accepted = sum(results[0].drafted), sum(results[0].accepted)
    assert max(results[0].drafted) <= settings["max_draft_tokens"] and 0 < accepted < drafted


def test_stopping_criteria_are_checked_after_every_committed_token(model, prompt):
    free_run = plain(model, prompt, max_new_tokens=30)[0, prompt.shape[1] :].tolist()
    stop_token = free_run[6]

    class StopAt(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids[:, -1] == stop_token

    criteria = StoppingCriteriaList([StopAt()])
    expected = plain(model, prompt, max_new_tokens=30, stopping_criteria=criteria)
    assert expected.shape[1] < prompt.shape[1] + 30  # it did stop early
    output = speculative(model, prompt, max_new_tokens=30, stopping_criteria=criteria, **SKIP)
    assert torch.equal(output, expected)


class Collect:
    """A streamer that records what it is given."""

    def __init__(self):
        self.tokens, self.puts, self.ended = [], 0, 0

    def put(self, value):
        self.puts += 1
        self.tokens += value.flatten().tolist()

    def end(self):
        self.ended += 1


def test_streamer_gets_the_prompt_then_every_committed_token_once(model, prompt):
    reference, streamed = Collect(), Collect()
    expected = plain(model, prompt, max_new_tokens=25, streamer=reference)
    output = speculative(model, prompt, max_new_tokens=25, streamer=streamed, **SKIP)
    assert torch.equal(output, expected)
    assert streamed.tokens == reference.tokens == output[0].tolist()
    assert streamed.ended == 1 and streamed.puts < reference.puts  # several tokens per verification cycle


def test_return_dict_and_eos(model, prompt):
    free_run = plain(model, prompt, max_new_tokens=20)[0, prompt.shape[1] :].tolist()
    eos = free_run[8]
    expected = plain(model, prompt, max_new_tokens=20, eos_token_id=eos)
    output = speculative(
        model, prompt, max_new_tokens=20, eos_token_id=eos, return_dict_in_generate=True, **SKIP
    )
    assert isinstance(output, GenerateDecoderOnlyOutput)
    assert torch.equal(output.sequences, expected) and output.sequences[0, -1] == eos


def test_the_custom_generate_directory_loads_from_a_local_path(model, prompt):
    expected = plain(model, prompt, max_new_tokens=20)
    output = plain(
        model,
        prompt,
        max_new_tokens=20,
        custom_generate=hf.CUSTOM_GENERATE_PATH,
        trust_remote_code=True,
        **SKIP,
    )
    assert torch.equal(output, expected)
    with pytest.raises(ValueError, match="trust_remote_code"):
        plain(model, prompt, max_new_tokens=5, custom_generate=hf.CUSTOM_GENERATE_PATH, **SKIP)


def test_the_draft_exit_rule_carries_across_calls(model, prompt):
    rule = AdaptiveThreshold(0.6, 0.99, 0.05, 0.5, 0.5, reset_per_sample=False)
    speculative(model, prompt, max_new_tokens=20, draft_exit=rule, **SKIP)
    assert rule.threshold != 0.6
    with pytest.raises(ValueError, match="draft_exit=... and also initial_threshold"):
        speculative(model, prompt, max_new_tokens=5, draft_exit=rule, initial_threshold=0.5, **SKIP)


def test_sampling_reads_the_warpers_generate_prepared(model, prompt):
    torch.manual_seed(0)
    output = speculative(
        model, prompt, max_new_tokens=12, do_sample=True, temperature=0.7, top_k=20, top_p=0.9, **SKIP
    )
    assert output.shape == (1, prompt.shape[1] + 12)
    from transformers import GenerationConfig
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = [TemperatureLogitsWarper(0.7), TopKLogitsWarper(20), TopPLogitsWarper(0.9)]
    assert sampling_config(GenerationConfig(do_sample=True), warpers) == SamplingConfig(0.7, 0.9, 20)
    assert sampling_config(GenerationConfig(do_sample=False), []) == SamplingConfig()


@pytest.mark.parametrize("kwargs,message", [
    ({"repetition_penalty": 1.3, **SKIP}, "RepetitionPenaltyLogitsProcessor"),
    ({}, "no skip set for model"),
    ({"model_name": "llama2_13b"}, "describes a 40-layer model"),
    ({"model_name": "tiny_llama", **SKIP}, "pass one"),
    ({"method": "autoregressive", **SKIP}, "not a self-speculative method"),
    ({"method": "hybrid", **SKIP}, r"'hybrid' is not a self-speculative method; use one of self_speculative, "
                                   r"adaptive_draft_exit \("),
    ({"do_sample": True, "num_return_sequences": 2, **SKIP}, "num_return_sequences=2"),
    ({"return_dict_in_generate": True, "output_scores": True, **SKIP}, "output_scores"),
])  # fmt: skip
def test_unsupported_settings_fail_clearly(model, prompt, kwargs, message):
    with pytest.raises(ValueError, match=message):
        speculative(model, prompt, max_new_tokens=5, **kwargs)


def test_padding_and_batches_are_refused(model):
    padded = torch.tensor([[0, 256, 10, 20]])
    with pytest.raises(ValueError, match="padding"):
        model.generate(
            input_ids=padded, attention_mask=torch.tensor([[0, 1, 1, 1]]), max_new_tokens=5,
            custom_generate=hf.self_speculative_generate, **SKIP,
        )  # fmt: skip
    batch = torch.tensor([[256, 10, 20], [256, 30, 40]])
    with pytest.raises(ValueError, match=r"shape \(1, seq_len\)"):
        model.generate(
            input_ids=batch, max_new_tokens=5, custom_generate=hf.self_speculative_generate, **SKIP
        )


def test_smollm2_greedy_equals_generate_with_its_configured_skip_set(smollm2, humaneval_prompts):
    """SmolLM2 loaded by the project is recognised (no skip set given) and decodes exactly like generate."""
    prompt = torch.tensor([smollm2.encode(humaneval_prompts[0])])
    eos = sorted(smollm2.eos_token_ids)
    results = []
    expected = plain(smollm2.model, prompt, max_new_tokens=16, eos_token_id=eos)
    output = speculative(smollm2.model, prompt, max_new_tokens=16, eos_token_id=eos, decode_results=results)
    assert torch.equal(output, expected)
    assert sum(results[0].accepted) > 0
