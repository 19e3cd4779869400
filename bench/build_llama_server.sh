#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the llama.cpp sources inside llama-cpp-python's sdist (the version
# uv.lock pins), as a reference for bench/llama_bench.py. It is not part of respd: it is built in a temp dir
# and only the binary is kept, in $RESPD_BENCH_CACHE (default ~/.cache/respd-bench). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 - <<'PY'
import tomllib
lock = tomllib.load(open("uv.lock", "rb"))
print(next(p["version"] for p in lock["package"] if p["name"] == "llama-cpp-python"))
PY
)
out="${RESPD_BENCH_CACHE:-$HOME/.cache/respd-bench}/llama-server-$version"
if [ -x "$out/llama-server" ]; then echo "$out/llama-server"; exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "building llama-server from llama-cpp-python $version's llama.cpp in $tmp" >&2
python3 -m pip download -q --no-deps --no-binary :all: -d "$tmp" "llama-cpp-python==$version" >&2
tar -xzf "$tmp"/llama_cpp_python-"$version".tar.gz -C "$tmp"
src="$tmp/llama_cpp_python-$version/vendor/llama.cpp"
# the same CPU build as respd's (GGML_NATIVE, no GPU backends); only the server and what it links
cmake -S "$src" -B "$tmp/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$tmp/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$out"
cp "$tmp/build/bin/llama-server" "$out/"
echo "$out/llama-server"
