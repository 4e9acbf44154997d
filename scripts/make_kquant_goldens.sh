#!/usr/bin/env bash
# make_kquant_goldens.sh: tests/data/ggml_kquant_goldens.h, the outputs of
# ggml itself (llama-cpp-python 0.3.36 sdist, CPU backend, one thread) on
# test_kernels_k's fixed inputs: ggml_mul_mat results and the hash of the
# dequantized rows, per K-quant / I-quant type. Golden-data tool, not CI.
#   bash scripts/llamacpp_tools.sh     # builds ggml into .cache-llamacpp/build
#   cmake --build build --target test_kernels_k
#   bash scripts/make_kquant_goldens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
V=.cache-llamacpp/llama_cpp_python-0.3.36/vendor/llama.cpp
B=.cache-llamacpp/build/ggml/src
[ -f "$B/libggml-cpu.a" ] || { echo "no ggml build in $B: run scripts/llamacpp_tools.sh first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -I$V/ggml/include scripts/ggml_exact.c $B/libggml.a $B/libggml-cpu.a $B/libggml-base.a \
    -lstdc++ -lgomp -lm -lpthread -o "$tmp/ggml_exact"
LS_KERNELS_DUMP="$tmp" build/tests/test_kernels_k > "$tmp/cases"
out=tests/data/ggml_kquant_goldens.h
{
    echo "/* Made by scripts/make_kquant_goldens.sh from ggml (llama-cpp-python 0.3.36"
    echo " * sdist, CPU backend, one thread, built -march=native on $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')):"
    echo " * ggml_mul_mat outputs (float bits, n-major) on test_kernels_k's fixed inputs"
    echo " * and the FNV-1a hash of the weights dequantized by ggml. Do not edit. */"
    echo "typedef struct ggml_golden {"
    echo "    int type;"
    echo "    uint32_t y[48];"
    echo "    uint64_t deq_fnv;"
    echo "} ggml_golden;"
    echo "static const ggml_golden ggml_goldens[] = {"
    while read -r type name rows cols n; do
        res=$("$tmp/ggml_exact" "$type" "$tmp/${name}_w.bin" "$tmp/${name}_x.bin" "$rows" "$cols" "$n")
        ys=$(echo "$res" | grep -v '^deq' | tr -s ' \n' ' ' | sed 's/, *$//; s/ *$//')
        deq=$(echo "$res" | sed -n 's/^deq //p')
        echo "    {$type, /* $name */ {$ys}, ${deq}ull},"
    done < "$tmp/cases"
    echo "};"
} > "$out"
echo "wrote $out"
