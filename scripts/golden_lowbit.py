#!/usr/bin/env python3
"""Golden data for the K-quant and I-quant types from llama.cpp itself.

Writes tests/data/golden_lowbit.json: llama.cpp's greedy continuation (48
tokens, EOS ignored) and first-step logits for
  - "random-lowbit": the random Llama model whose matrices cycle through
    Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS (tests/test_model_formats.c
    writes it, deterministic, to build/tests/tmp/llama2-lowbit.gguf), on
    fixed token-id prompts; checked in CI;
  - "SmolLM2-135M-Instruct.<TYPE>": the default model's weights made into
    Q4_K_M, Q5_K_M, Q6_K, Q3_K_M, Q2_K and IQ4_XS by llama.cpp's own
    quantizer (scripts/llamacpp_tools.sh --models), on the prompt ids of
    tests/data/golden_smollm2_q4_1.json; checked with LS_LLAMACPP_MODELS=1.

llama.cpp runs through scripts/golden_llamacpp.c (libllama, prompt
evaluated one token at a time, no weight repacking) linked against the
AVX2-only build that `scripts/llamacpp_tools.sh --avx2` makes: llama.cpp's
AVX-512 build rounds differently (16-wide variants of its vector loops), and our
engine reproduces its AVX2 build on every CPU. Golden-data tool, not CI:

    bash scripts/llamacpp_tools.sh --models && bash scripts/llamacpp_tools.sh --avx2
    cmake --build build && (cd build && ctest -R test_model_formats)
    python3 scripts/golden_lowbit.py
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VER = "0.3.36"
SRC = os.path.join(ROOT, ".cache-llamacpp", f"llama_cpp_python-{VER}", "vendor", "llama.cpp")
B2 = os.path.join(ROOT, ".cache-llamacpp", "build-avx2")
OUT = os.path.join(ROOT, "tests", "data", "golden_lowbit.json")
KQUANTS = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "IQ4_XS"]


def harness(tmp):
    exe = os.path.join(tmp, "golden_llamacpp")
    libs = [os.path.join(B2, "src", "libllama.a")] + [
        os.path.join(B2, "ggml", "src", f) for f in ("libggml.a", "libggml-cpu.a", "libggml-base.a")]
    subprocess.run(["gcc", "-O2", "-I" + os.path.join(SRC, "include"), "-I" + os.path.join(SRC, "ggml", "include"),
                    os.path.join(ROOT, "scripts", "golden_llamacpp.c")] + libs +
                   ["-lstdc++", "-lgomp", "-lm", "-lpthread", "-o", exe], check=True)
    return exe


def fnv1a64(path):
    h = 0xcbf29ce484222325
    with open(path, "rb") as f:
        for b in f.read():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def run(exe, model, prompts):
    inp = "".join(" ".join(str(t) for t in p) + "\n" for p in prompts)
    res = subprocess.run([exe, model], input=inp, capture_output=True, text=True, check=True)
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        exe = harness(tmp)
        models = []
        rnd = os.path.join(ROOT, "build", "tests", "tmp", "llama2-lowbit.gguf")
        x = 12345
        prompts = []
        for n in (5, 12, 21, 34):
            p = [1]
            for _ in range(n - 1):
                x = (x * 1103515245 + 12345) % (1 << 31)
                p.append(3 + x % 31000)
            prompts.append(p)
        models.append({"name": "random-lowbit", "file": "build/tests/tmp/llama2-lowbit.gguf",
                       "file_fnv1a64": fnv1a64(rnd), "cases": run(exe, rnd, prompts)})
        q41 = json.load(open(os.path.join(ROOT, "tests", "data", "golden_smollm2_q4_1.json")))
        sprompts = [c["prompt_ids"] for c in q41["cases"]]
        for t in KQUANTS:
            f = f"models/bench/SmolLM2-135M-Instruct.{t}.gguf"
            models.append({"name": f"SmolLM2-135M-Instruct.{t}", "file": f,
                           "cases": run(exe, os.path.join(ROOT, f), sprompts)})
            print(t, file=sys.stderr)
    doc = {"generator": "scripts/golden_lowbit.py",
           "reference": f"llama.cpp from the llama-cpp-python {VER} sdist, AVX2 build (GGML_NATIVE=OFF, AVX2/FMA/F16C),"
                        " CPU backend, no repacking, flash attention off, prompt evaluated one token at a time, greedy",
           "n_gen": 48, "models": models}
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
