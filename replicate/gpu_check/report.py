"""report.md of the GPU check, from its results.json (how to read it: docs/gpu.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replicate.run.rundir import write_atomic


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(interval: list[float] | None) -> str:
    return "" if not interval else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_number(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "reported"}[passed]


def _environment(env: dict[str, Any]) -> list[str]:
    versions = env.get("versions", {})
    lines = ["## Environment", ""]
    rows = [
        ["device", env.get("gpu") or env.get("device")],
        ["driver", env.get("driver") or env.get("driver_source")],
        ["CUDA (torch build)", env.get("cuda")],
        ["cuDNN", env.get("cudnn")],
        ["compute capability", env.get("compute_capability")],
        [
            "GPU memory (GiB)",
            None if env.get("gpu_memory_bytes") is None else env["gpu_memory_bytes"] / 2**30,
        ],
        [
            "torch / transformers / accelerate",
            " / ".join(str(versions.get(p)) for p in ("torch", "transformers", "accelerate")),
        ],
        [
            "kernel packages",
            ", ".join(f"{k} {v}" for k, v in env.get("kernel_packages", {}).items() if v) or "none",
        ],
        ["TF32 (matmul, cudnn)", f"{env['tf32']['matmul']}, {env['tf32']['cudnn']}"],
        ["CPU, threads", f"{env.get('cpu')}, {env.get('torch_threads')}"],
        ["git commit", f"{env.get('git_commit')}{' (dirty)' if env.get('git_dirty') else ''}"],
        ["date", env.get("date")],
    ]
    lines += _table(["", ""], rows)
    lines += _table(
        ["attention implementation", "installed", "why"],
        [[name, row["installed"], row["reason"]] for name, row in env["attention_implementations"].items()],
    )
    return lines


def _lossless(name: str, section: dict[str, Any]) -> list[str]:
    lines = [f"## Lossless matrix, {section['dtype']} (`{name}`)", ""]
    lines.append(
        f"{section['identical']}/{section['decodes']} decodes token-identical to `model.generate` "
        f"(identity rate {section['identity_rate']:.4f}); every layer's cache at the committed length: "
        f"{section['cache_lengths_ok']}."
    )
    lines.append("")
    if section["divergences"]:
        lines.append(
            "Every divergence, with the reference's top-two logit margin at the first differing token "
            "(near 0: a near-tie; verdict: pending issue 12's near-tie rule):"
        )
        lines.append("")
        lines += _table(
            ["model", "prompt", "method", "kv cache", "first difference", "margin", "verdict"],
            [
                [d["model"], d["prompt"], d["method"], d["kv_cache"], d["first_difference"], d["reference_margin"],
                 d.get("verdict") or "not judged"]
                for d in section["divergences"]
            ],
        )  # fmt: skip
    return lines


def _shapes(section: dict[str, Any]) -> list[str]:
    lines = ["## Cost profiles of LLaMA-2-shaped random models", ""]
    lines.append(f"Device: {section['device']}. {section['note']}.")
    lines.append("")
    for name, shape in section["shapes"].items():
        profile = shape["profile"]
        lines.append(f"### {name}: {shape['shape']}, {shape['dtype']}, context {profile['context_length']}")
        lines.append("")
        lines.append(
            f"Skip set: {shape['skip']['source']} ({len(shape['skip']['attention'])} attention + "
            f"{len(shape['skip']['mlp'])} MLP sub-blocks)."
        )
        lines.append("")
        lines += _table(
            ["attention", "full step (ms)", "draft / full", "verify k=1 / full", "verify k=12 / full",
             "best fixed-K speedup at acceptance 0.919"],
            [
                [impl, row.get("full_step_s", 0) * 1e3 if row["available"] else None, row.get("draft_to_full"),
                 row["verify_to_full"][1] if row["available"] else None,
                 row["verify_to_full"][-1] if row["available"] else None,
                 max(row["fixed_k_speedup_at_acceptance"]) if row["available"] else row["reason"]]
                for impl, row in shape["attention"]["rows"].items()
            ],
        )  # fmt: skip
        lines.append(
            f"verify(k)/full for k = 0..{profile['max_draft_tokens']} ({shape['attn_implementation']}, "
            f"pooled): " + ", ".join(f"{v:.2f}" for v in profile["verify_to_full"])
        )
        lines.append("")
        lines += _table(
            ["KV cache", "full step (ms)", "draft / full", "verify k=12 / full"],
            [[kind, row["full_step_s"] * 1e3, row["draft_to_full"], row["verify_to_full"][-1]]
             for kind, row in shape["kv_cache_profiles"].items()],
        )  # fmt: skip
        efficiency = shape["random_weight_efficiency"]
        lines.append(
            f"Implementation efficiency (random weights, fixed K, each decode priced with the profiles measured "
            f"just before and after it): {efficiency['efficiency']:.3f}{_interval(efficiency['efficiency_ci'])}; "
            f"speedup efficiency {_number(efficiency['speedup_efficiency'])}"
            f"{_interval(efficiency['speedup_efficiency_ci'])}; profile drift {profile['drift']:.3f}."
        )
        rows = shape["memory"].get("rows", {})
        if rows:
            lines.append(
                "Peak memory (GiB): "
                + ", ".join(f"{n} {r['peak_bytes'] / 2**30:.2f}" for n, r in rows.items())
            )
        lines.append("")
        predictions = shape["paper_acceptance_predictions"]
        lines += _table(
            ["paper row (LLaMA-2-13B, CNN/DM)", "acceptance", "predicted speedup here", "paper's measured (A100)"],
            [[f"fixed K={r['max_draft_tokens']}", r["acceptance_rate"], r["predicted_speedup"],
              r["paper_measured_speedup_13b"]] for r in predictions["fixed_k"]]
            + [[f"adaptive (best fixed K={predictions['adaptive']['best_k']} at its acceptance)",
                predictions["adaptive"]["acceptance_rate"], predictions["adaptive"]["best_predicted_speedup"],
                predictions["adaptive"]["paper_measured_speedup_13b"]]],
        )  # fmt: skip
    return lines


def _end_to_end(section: dict[str, Any]) -> list[str]:
    lines = [f"## {section['model']} end to end ({section['dtype']}, HumanEval, {section['n_samples']} prompts x "
             f"{section['max_new_tokens']} tokens, via the runner)", ""]  # fmt: skip
    if not section["sandboxed"]:
        lines += [
            "HumanEval programs ran without the sandbox's namespaces (not root); scores are incidental.",
            "",
        ]
    lines += _table(
        ["method", "kv cache", "speedup", "acceptance", "identical", "tok/s", "AR tok/s", "predicted", "efficiency"],
        [
            [r["method"], r["kv_cache"], f"{_number(r['speedup'])}{_interval(r['speedup_ci'])}", r["acceptance_rate"],
             r["identical_fraction"], r["tokens_per_s"], r["baseline_tokens_per_s"], r["predicted_speedup"],
             f"{_number(r['efficiency'])}{_interval(r['efficiency_ci'])}"]
            for r in section["rows"]
        ],
    )  # fmt: skip
    for row in section["rows"]:
        for divergence in row["divergences"]:
            lines.append(
                f"- {row['method']}/{row['kv_cache']}: sample {divergence['id']} differs at token "
                f"{divergence['first_difference']}, baseline margin {_number(divergence['baseline_margin'])}"
            )
    return lines + [""]


def _host_syncs(section: dict[str, Any]) -> list[str]:
    lines = [f"## Host syncs ({section['model']}, K={section['max_draft_tokens']})", ""]
    lines += _table(
        ["loop", "threshold", "cycles", "drafted", "host reads", "per cycle", "CUDA syncs", "per cycle"],
        [[name, r["threshold"], r["cycles"], r["drafted"], r["python_reads"], r["python_reads_per_cycle"],
          r["cuda_syncs"], r["cuda_syncs_per_cycle"]] for name, r in section["rows"].items()],
    )  # fmt: skip
    return lines


def write_report(results: dict[str, Any], path: Path) -> None:
    env = results["environment"]
    title = (
        "GPU check"
        if not results["rehearsal"]
        else "GPU check REHEARSAL (CPU, tiny shapes: not a GPU result)"
    )
    lines = [f"# {title}: {env.get('gpu') or env.get('device')}, {env.get('date')}", ""]
    if results["complete"]:
        verdict = "PASSED" if results["passed"] else "NOT PASSED"
    else:  # rewritten after every section: a run cut off (by its lease, say) keeps what finished
        verdict = f"INCOMPLETE (not yet run: {', '.join(results['pending'])}; cut off, or still running)"
    lines.append(f"**{verdict}** after {results['wall_s']:.0f} s "
                 f"(budget {results['settings']['budget_s']} s). How to read this report: docs/gpu.md.")  # fmt: skip
    lines.append("")
    if results["not_selected"]:
        lines.append(
            f"Sections not selected for this run (`sections`): {', '.join(results['not_selected'])}."
        )
        lines.append("")
    lines += _table(
        ["check", "result", "detail"],
        [[label, _verdict(check["passed"]), check["detail"]] for label, check in results["checks"].items()],
    )
    lines += _table(
        ["section", "status", "seconds"],
        [[name, s["status"] + (f": {s.get('error') or s.get('reason')}" if s["status"] != "ok" else ""),
          s.get("wall_s")] for name, s in results["sections"].items()],
    )  # fmt: skip
    lines += _environment(env)
    writers = {"host_syncs": _host_syncs, "shapes": _shapes, "end_to_end": _end_to_end}
    for name, section in results["sections"].items():
        if section["status"] != "ok":
            continue
        if name.startswith("lossless_"):
            lines += _lossless(name, section)
        else:
            lines += writers[name](section)
    write_atomic(path, "\n".join(lines) + "\n")
