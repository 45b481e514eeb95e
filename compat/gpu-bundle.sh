#!/usr/bin/env bash
# `make gpu-bundle`: the wheels a lent GPU machine needs for the GPU check (compat/gpu-bundle.txt), downloaded
# here for its Python 3.12 / manylinux x86-64 into .whl/ (git-ignored), hashes checked; then the size of what
# travels (the working tree as git sees it, plus .whl) against the 64 MiB limit, and the one command to run
# there (docs/gpu.md). Nothing here installs anything.
# Usage: compat/gpu-bundle.sh   (from anywhere). Exits non-zero on a download or hash failure, a wheel that is
# not for Python 3.12 on Linux x86-64, or a total over the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
dest=.whl
limit=$((64 * 1024 * 1024))
platforms=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# --no-deps: the list is complete by construction (what the image lacks), and a dependency pip would add is
# one the machine already has in its own version. Without --only-binary an sdist-only pin arrives as its
# sdist (hash-checked like the wheels) and is built below.
"$python" -m pip download -q --no-deps --require-hashes --python-version 3.12 --implementation cp \
    "${platforms[@]/#/--platform=}" -r compat/gpu-bundle.txt -d "$work/download"
rm -rf "$dest"
mkdir -p "$dest"
for file in "$work"/download/*; do
    case "$file" in
        *.whl) cp "$file" "$dest/" ;;
        *.tar.gz | *.zip)  # pure-Python sdist: build its wheel here (the machine cannot)
            "$python" -m pip wheel -q --no-deps --no-cache-dir "$file" -w "$dest" ;;
        *) echo "gpu-bundle: unexpected download $file"; exit 1 ;;
    esac
done
for wheel in "$dest"/*.whl; do
    case "$(basename "$wheel")" in
        *-py3-none-any.whl | *-py2.py3-none-any.whl | *-cp312-cp312-manylinux*x86_64.whl) ;;
        *) echo "gpu-bundle: $(basename "$wheel") does not install on CPython 3.12 / Linux x86-64"; exit 1 ;;
    esac
done

# The tree that travels has no .git: name the commit it came from (compat/gpu-run.sh prints it in console.log).
echo "$(git rev-parse HEAD 2>/dev/null || echo unknown)$([ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (with uncommitted changes)'), bundled $(date -u +%Y-%m-%dT%H:%MZ)" >"$dest/SOURCE"
bundle_bytes=$(cat "$dest"/* | wc -c)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r cat 2>/dev/null | wc -c)
total=$((bundle_bytes + tree_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
echo "gpu-bundle: $(ls "$dest"/*.whl | wc -l) wheels in $dest/ ($(mib "$bundle_bytes")), from $(cat "$dest/SOURCE"):"
ls -l "$dest"/*.whl | awk '{ printf "  %s (%d bytes)\n", $NF, $5 }'
echo "gpu-bundle: working tree $(mib "$tree_bytes") + bundle $(mib "$bundle_bytes") = $(mib "$total") of the 64 MiB that travel"
if [ "$total" -gt "$limit" ]; then
    echo "gpu-bundle: over the limit by $(mib $((total - limit))): remove large untracked files from the tree"
    exit 1
fi
echo "gpu-bundle: on the lent GPU machine (device run tool: carry [\".whl\"], timeout_s 480), run:"
echo "  bash compat/gpu-run.sh"
echo "gpu-bundle: the report comes back as \$OUT/gpu-check/report.md (results.json, console.log beside it)"
