#!/usr/bin/env bash
# The GPU check on a lent GPU machine as it is (docs/gpu.md): no network, its own python3, torch and
# transformers, this working tree, and the wheels of `make gpu-bundle` carried in .whl/. Installs those wheels
# into a private directory (nothing of the machine's own packages changes), then runs
# `python -m replicate.gpu_check` with the sections that need nothing else (conf/gpu_check.yaml `sections`:
# fp32 identity, bf16 identity with margins, the 13B/7B-shaped cost profiles with the paper's acceptance
# priced on them, host syncs; end_to_end is not among them: SmolLM2's 98 MB GGUF cannot travel).
# Results go to $OUT/gpu-check/ (outputs/gpu-check/ without $OUT): report.md and results.json, rewritten
# after every section, and console.log; at most these three files, so all of them come back.
# Usage: bash compat/gpu-run.sh [--rehearse] [override ...]
#   --rehearse: the same on the CPU with tiny shapes (conf/gpu_check_rehearse.yaml), the proof here.
# Exit status: the check's (0 passed, 1 not, 2 bad input); 3 when the bundle is missing or incomplete.
set -uo pipefail
cd "$(dirname "$0")/.."
rehearse=()
if [ "${1:-}" = --rehearse ]; then
    rehearse=(--rehearse)
    shift
fi
out=${OUT:-outputs}/gpu-check$([ ${#rehearse[@]} -gt 0 ] && echo -rehearsal)
mkdir -p "$out"
log="$out/console.log"
say() { echo "gpu-run: $*" | tee -a "$log"; }
: >"$log"

shopt -s nullglob
wheels=(.whl/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    say "no wheels in .whl/: run \`make gpu-bundle\` on the machine that has the network, and carry .whl"
    exit 3
fi
site=$(mktemp -d)/site
# --no-index: nothing is fetched; --no-deps: the machine's own torch, transformers, numpy, pyyaml stay in use.
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "${wheels[@]}" >>"$log" 2>&1; then
    say "installing the bundle failed (see above)"
    exit 3
fi
export PYTHONPATH="$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline
missing=$(python3 - <<'EOF'
import importlib.util
needed = ["torch", "transformers", "accelerate", "numpy", "scipy", "yaml", "tqdm", "hydra", "omegaconf", "antlr4"]
print(" ".join(name for name in needed if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
    say "missing on this machine even with the bundle: $missing (compat/gpu-bundle.txt lists what the image lacks)"
    exit 3
fi
say "source: $(cat .whl/SOURCE 2>/dev/null || echo 'not recorded (.whl/SOURCE missing)')"
say "python $(python3 -c 'import platform; print(platform.python_version())'), bundle in $site: $(cd .whl && ls -- *.whl | tr '\n' ' ')"
say "results in $out/ (report.md, results.json: rewritten after every section)"

# Sections that need nothing but this tree and the bundle, most valuable first (conf/gpu_check.yaml).
python3 -m replicate.gpu_check "${rehearse[@]}" "output_dir=$out" \
    "sections=[lossless_float32,lossless_bfloat16,shapes,host_syncs]" "$@" 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
say "exit status $status; report: $out/report.md"
exit "$status"
