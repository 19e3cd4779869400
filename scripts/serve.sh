#!/usr/bin/env bash
# Install respd (uv, then the locked environment in .venv) and start the server. Flags go to `respd serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap, the sandbox of the code_interpreter tool (Debian/Ubuntu); without it the tool is left out
bash scripts/system-packages.sh
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9"
# llama-cpp-python has no wheel for Linux on PyPI: the first install builds llama.cpp from source (minutes; see
# the README's "Default model"). Compile on every core (with ccache where it is installed), and show progress.
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# From uv's cache first, offline: online, uv may find its cached llama-cpp-python sdist stale and rebuild it.
if python3 -m uv sync --frozen --no-dev --offline >/dev/null 2>&1; then
  :
elif .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  python3 -m uv sync --frozen --no-dev
else
  echo "respd: installing; the first install compiles llama.cpp (llama-cpp-python), about 10 minutes on 2 cores" >&2
  start=$SECONDS
  # uv -v streams the build's output: keep uv's own lines and the compiler's [n/total] steps, one line each
  python3 -m uv sync --frozen --no-dev -v 2>&1 | awk -v t0="$start" '
    /\[[0-9]+\/[0-9]+\] / { match($0, /\[[0-9]+\/[0-9]+\]/); step = substr($0, RSTART, RLENGTH)
                            n = split($0, w, "/"); printf "respd: building llama.cpp %s %s\n", step, w[n]; fflush(); next }
    /^DEBUG/ { next }
    /^(Resolved|Prepared|Installed|Built|Building|Uninstalled|Audited)|rror/ { print; fflush() }'
  echo "respd: installed in $((SECONDS - start)) s" >&2
fi
exec python3 -m uv run --frozen --no-dev --no-sync respd serve "$@"
