#!/usr/bin/env bash
# Install the JavaScript clients of the end-to-end tests from package-lock.json (pinned versions), unless
# node_modules already holds exactly that lock file's packages; npm's own cache keeps the downloads.
set -euo pipefail
cd "$(dirname "$0")"
stamp=node_modules/.respd-installed-lock
if [ -f "$stamp" ] && cmp -s package-lock.json "$stamp"; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
cp package-lock.json "$stamp"
