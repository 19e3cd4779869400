#!/usr/bin/env bash
# Install respd (uv, then the locked environment in .venv) and start the server. Flags go to `respd serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap, the sandbox of the code_interpreter tool (Debian/Ubuntu); without it the tool is left out
bash scripts/system-packages.sh
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9"
# llama-cpp-python builds from source on first sync: compile on every core
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m uv sync --frozen --no-dev
exec python3 -m uv run --frozen --no-dev respd serve "$@"
