#!/usr/bin/env bash
# The system packages respd uses, installed when missing: bubblewrap (bwrap), the code_interpreter sandbox.
# Installs only as root on a Debian-like system; otherwise says what to install and goes on (respd then leaves
# code_interpreter out, and says so when it starts).
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)" >&2
    apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
else
    echo "respd: please install ${missing[*]} (e.g. sudo apt-get install ${missing[*]}): code_interpreter needs it" >&2
fi
