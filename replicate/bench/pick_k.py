"""Pick K (`max_draft_tokens`) from the device: the speedup-optimal fixed draft length on this machine's cost
profile at a given per-token draft/target agreement.

    python -m replicate.bench.pick_k model=qwen2_5_coder_0_5b --agreement 0.97 [--max-k 8] [--context 200]
        [--repeats 3] [--output pick_k.json]

It measures one cost profile of the loaded model with its configured skip set (`measure_cost_profile`: full
step, draft step, verify passes over 1..K+1 tokens at `--context` cached tokens) and prices, for every K, a
cycle that drafts K tokens: with each draft agreeing with the full model with probability p independently
(`--agreement`, e.g. a search's teacher-forced agreement), a cycle accepts sum_{i=1..K} p^i drafts on average,
i.e. an acceptance rate r(K) = p (1 - p^K) / ((1 - p) K), and `replicate.cost_model.speedup_for_acceptance`
gives (r K + 1) full steps / (K draft steps + verify over K + 1 tokens). On a CPU whose verify cost jumps at
4 tokens the best K is small; on the paper's A100 (verify ~1.06 steps for any K <= 8) it is large.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from replicate.cost_model import speedup_for_acceptance


def acceptance_at(agreement: float, max_draft_tokens: int) -> float:
    """Expected accepted / drafted of a cycle drafting K tokens, each agreeing with probability p."""
    if not 0.0 <= agreement <= 1.0 or max_draft_tokens < 1:
        raise ValueError(f"need 0 <= agreement <= 1 and K >= 1, got {agreement}, {max_draft_tokens}")
    if agreement == 1.0:
        return 1.0
    accepted = agreement * (1 - agreement**max_draft_tokens) / (1 - agreement)
    return accepted / max_draft_tokens


def speedup_by_k(profile: Mapping[str, Any], agreement: float, max_k: int) -> dict[int, float]:
    """Predicted speedup of fixed-K drafting for K = 1..max_k on `profile`."""
    return {k: speedup_for_acceptance(profile, k, acceptance_at(agreement, k)) for k in range(1, max_k + 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m replicate.bench.pick_k", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--agreement", type=float, required=True, help="per-token draft agreement p")
    parser.add_argument("--max-k", type=int, default=8)
    parser.add_argument("--context", type=int, default=200, help="cached tokens the passes are timed at")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args, overrides = parser.parse_known_args(argv)
    from replicate.config import compose_config
    from replicate.core.models import load_model
    from replicate.cost_profile import measure_cost_profile
    from replicate.run.environment import environment

    loaded = load_model(compose_config(overrides).model)
    profile = measure_cost_profile(loaded, args.context, args.max_k, args.repeats, warmup=1)
    speedups = speedup_by_k(profile, args.agreement, args.max_k)
    best = max(speedups, key=speedups.get)
    for k, speedup in speedups.items():
        print(
            f"K={k}: acceptance {acceptance_at(args.agreement, k):.3f}, verify {profile['verify_to_full'][k]:.2f} "
            f"steps, predicted speedup {speedup:.3f}{'  <- best' if k == best else ''}"
        )
    print(
        f"draft step {profile['draft_to_full']:.3f} full steps; full step {profile['full_step_s'] * 1e3:.1f} ms"
    )
    if args.output:
        record = {
            "model": loaded.name,
            "skip": {"attention": list(loaded.plan.attention), "mlp": list(loaded.plan.mlp)},
            "agreement": args.agreement,
            "best_max_draft_tokens": best,
            "predicted_speedup_by_k": speedups,
            "profile": {key: value for key, value in profile.items() if key != "samples_s"},
            "environment": environment(loaded.device),
        }
        args.output.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
