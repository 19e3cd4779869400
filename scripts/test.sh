#!/usr/bin/env bash
# Install everything (uv, the locked .venv, the npm clients of tests/js), then run the full check: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap, the sandbox of the code_interpreter tool (Debian/Ubuntu); without it the tool is left out
bash scripts/system-packages.sh
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9"
# llama-cpp-python builds from source on first sync: compile on every core
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
python3 -m uv sync --frozen
# the JavaScript clients of the end-to-end tests (Vercel AI SDK, Codex CLI), pinned by tests/js/package-lock.json
bash tests/js/install.sh
python3 -m uv run --frozen ruff check src tests bench
python3 -m uv run --frozen mypy
python3 -m uv run --frozen pytest "$@"
