#!/usr/bin/env bash
# llamacpp_tools.sh: llama.cpp's own tools for comparisons, built from the
# llama.cpp source inside the llama-cpp-python sdist (PyPI, a registry
# package) with native CPU flags: llama-bench (speed), llama-quantize (the
# F16 / K-quant files of the default model's weights), llama-lookup (prompt
# lookup decoding, the anchor for our lookup drafts).
#
#   scripts/llamacpp_tools.sh            build (once) and print the bin dir
#   scripts/llamacpp_tools.sh --models   also make models/bench/*.gguf (F16, Q8_0, Q5_0, Q5_1)
#
# Everything lands in .cache-llamacpp/ (gitignored). Not part of the product
# or of CI: benchmarks only.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VER=0.3.36
CACHE="$ROOT/.cache-llamacpp"
SRC="$CACHE/llama_cpp_python-$VER/vendor/llama.cpp"
BIN="$CACHE/build/bin"
mkdir -p "$CACHE"
if [ ! -x "$BIN/llama-bench" ] || [ ! -x "$BIN/llama-quantize" ] || [ ! -x "$BIN/llama-lookup" ]; then
    if [ ! -d "$SRC" ]; then
        python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$CACHE" >&2
        tar -xzf "$CACHE/llama_cpp_python-$VER.tar.gz" -C "$CACHE"
    fi
    cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF >&2
    cmake --build "$CACHE/build" -j"$(nproc)" --target llama-bench llama-quantize llama-lookup >&2
fi
if [ "${1:-}" = "--models" ]; then
    mkdir -p "$ROOT/models/bench"
    for t in F16 Q8_0 Q5_0 Q5_1; do
        out="$ROOT/models/bench/SmolLM2-135M-Instruct.$t.gguf"
        [ -f "$out" ] || "$BIN/llama-quantize" --allow-requantize "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$out" "$t" >&2
    done
fi
echo "$BIN"
