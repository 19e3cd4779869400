#!/usr/bin/env bash
# Install everything (uv, the locked .venv, the npm clients of tests/js), then run the full check: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# bubblewrap, the sandbox of the code_interpreter tool (Debian/Ubuntu); without it the tool is left out
bash scripts/system-packages.sh
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9"
# llama-cpp-python builds from source on first sync: compile on every core
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# From uv's cache first, offline: online, uv may find its cached llama-cpp-python sdist stale, download it
# again and rebuild llama.cpp (minutes) for the same locked version. A fresh machine has nothing cached: online.
python3 -m uv sync --frozen --offline >/dev/null 2>&1 || python3 -m uv sync --frozen
# the JavaScript clients of the end-to-end tests (Vercel AI SDK, Codex CLI), pinned by tests/js/package-lock.json
bash tests/js/install.sh
python3 -m uv run --frozen --no-sync ruff check src tests bench
python3 -m uv run --frozen --no-sync mypy
# several workers, a test file each at a time: most of the suite's time is waiting (servers starting, leases
# running out, fixtures), not computing; RESPD_TEST_WORKERS=0 runs it in this one process
python3 -m uv run --frozen --no-sync pytest -n "${RESPD_TEST_WORKERS:-3}" --dist loadfile --durations=15 "$@"
