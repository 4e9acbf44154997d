#!/usr/bin/env python3
"""Golden data for the default model from llama.cpp (llama-cpp-python, PyPI).

Writes tests/data/golden_smollm2_q4_1.json: for each prompt, llama.cpp's prompt
token ids, its greedy continuation (48 tokens, EOS ignored), and the first
step's logits (the 64 largest and 64 fixed-index entries, plus the argmax).
CI compares against this file and needs no llama.cpp.

llama.cpp evaluates the prompt one token at a time here (n_batch = 1), so
every position goes through its single-token arithmetic, which our engine
reproduces operation for operation (see engine/src/forward.c). llama.cpp's
batched prompt path (tinyBLAS) rounds differently; greedy decoding of a
Q4_1 model is sensitive enough to such rounding that llama.cpp's own
batched-prompt output differs from its n_batch=1 output on some prompts:
the file records that too ("batched_prompt_greedy_ids").

Rerun (after scripts/setup.sh fetched the model):
    python3 -m venv /opt/refenv
    CMAKE_ARGS="-DGGML_NATIVE=ON" /opt/refenv/bin/pip install numpy llama-cpp-python==0.3.36
    /opt/refenv/bin/python scripts/golden_model.py
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama, llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "golden_smollm2_q4_1.json")
N_GEN = 48

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "Here is a list of the planets in the solar system:\n1.",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
    "#include <stdio.h>\n\nint main(void) {\n",
    "<|im_start|>user\nWrite a haiku about autumn leaves.<|im_end|>\n<|im_start|>assistant\n",
    "In 1969, Neil Armstrong became",
    "Translate to French: 'Good morning, how are you?'\nFrench:",
]


def greedy(llm, logits):
    gen = []
    cur = logits
    for step in range(N_GEN):
        tok = int(np.argmax(cur))
        gen.append(tok)
        if step + 1 == N_GEN:
            break
        llm.eval([tok])
        cur = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
    return gen


def main():
    llm = Llama(model_path=MODEL, n_ctx=512, n_batch=512, n_threads=2, seed=42,
                logits_all=True, flash_attn=False, verbose=False)
    n_vocab = llm.n_vocab()
    fixed = [int(i) for i in np.linspace(0, n_vocab - 1, 64).astype(int)]
    cases = []
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        batched = greedy(llm, np.array(llm.scores[len(ids) - 1], dtype=np.float32))
        llm.reset()
        for t in ids:
            llm.eval([t])
        logits = np.array(llm.scores[len(ids) - 1], dtype=np.float32)
        top = np.argsort(-logits, kind="stable")[:64]
        gen = greedy(llm, logits)
        text = llm.detokenize(gen).decode("utf-8", errors="replace")
        cases.append({
            "prompt": prompt,
            "prompt_ids": [int(t) for t in ids],
            "greedy_ids": gen,
            "greedy_text": text,
            "batched_prompt_greedy_ids": batched,
            "first_logits": {
                "argmax": int(np.argmax(logits)),
                "top_ids": [int(t) for t in top],
                "top_values": [float(logits[t]) for t in top],
                "fixed_ids": fixed,
                "fixed_values": [float(logits[t]) for t in fixed],
            },
        })
        same = "same" if batched == gen else "DIFFERENT"
        print(f"{prompt[:40]!r} -> {text[:60]!r} (batched prompt: {same})", file=sys.stderr)
    doc = {
        "generator": "scripts/golden_model.py",
        "reference": "llama-cpp-python " + __import__("llama_cpp").__version__ +
                     " (llama.cpp CPU backend, flash_attn off, prompt evaluated one token at a time, greedy)",
        "model": os.path.basename(MODEL),
        "n_gen": N_GEN,
        "cases": cases,
    }
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
    print("wrote", OUT, file=sys.stderr)


if __name__ == "__main__":
    main()
