#!/usr/bin/env bash
# llamacpp_tools.sh: llama.cpp's own tools for comparisons, built from the
# llama.cpp source inside the llama-cpp-python sdist (PyPI, a registry
# package) with native CPU flags: llama-bench (speed), llama-quantize (the
# F16 / K-quant files of the default model's weights), llama-lookup (prompt
# lookup decoding, the anchor for our lookup drafts).
#
#   scripts/llamacpp_tools.sh            build (once) and print the bin dir
#   scripts/llamacpp_tools.sh --models   also make models/bench/*.gguf (F16, Q8_0, Q5_0, Q5_1,
#                                        and from the F16 one Q4_K_M, Q5_K_M, Q6_K, Q3_K_M, Q2_K, IQ4_XS)
#   scripts/llamacpp_tools.sh --avx2     build llama.cpp's library for AVX2 only (.cache-llamacpp/build-avx2)
#                                        and print its dir: the golden tools link it. llama.cpp's own
#                                        arithmetic differs between its AVX2 and AVX-512 builds
#                                        (16-wide variants of its vector loops); our engine
#                                        reproduces the AVX2 build on every CPU.
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
if [ "${1:-}" = "--avx2" ]; then
    B2="$CACHE/build-avx2"
    if [ ! -f "$B2/src/libllama.a" ]; then
        cmake -S "$SRC" -B "$B2" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
            -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DLLAMA_CURL=OFF \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
        cmake --build "$B2" -j"$(nproc)" --target llama >&2
    fi
    echo "$B2"
    exit 0
fi
if [ "${1:-}" = "--models" ]; then
    mkdir -p "$ROOT/models/bench"
    for t in F16 Q8_0 Q5_0 Q5_1; do
        out="$ROOT/models/bench/SmolLM2-135M-Instruct.$t.gguf"
        [ -f "$out" ] || "$BIN/llama-quantize" --allow-requantize "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$out" "$t" >&2
    done
    for t in Q4_K_M Q5_K_M Q6_K Q3_K_M Q2_K IQ4_XS; do
        out="$ROOT/models/bench/SmolLM2-135M-Instruct.$t.gguf"
        [ -f "$out" ] || "$BIN/llama-quantize" "$ROOT/models/bench/SmolLM2-135M-Instruct.F16.gguf" "$out" "$t" >&2
    done
fi
echo "$BIN"
