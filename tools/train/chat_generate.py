#!/usr/bin/env python3
"""The model's own greedy answers to chat prompts (tools/train/chat_prompts.py),
as token-id sequences for engine/dump-states --tokens-file.

For each prompt, runs the engine (layerskip-bench, autoregressive, greedy,
stops at EOS or --max-new tokens) and writes prompt ids + answer ids (+ the
EOS token when it stopped there) as one line of space-separated ids. The
prompt's ids come from `layerskip-bench --tokenize` (special tokens parsed:
<|im_start|> and <|im_end|> are single tokens) and are checked against the
run's prompt_tokens. Resumable: lines already in OUT are kept (OUT.jsonl
keeps id, kind, lengths, finish reason).

  chat_generate.py --prompts W/chat/train.jsonl --out W/chat/train.ids --limit 300
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def run(bench, model, prompt, max_new, threads):
    ids = json.loads(subprocess.run([bench, "-m", model, "--tokenize", prompt], check=True,
                                    capture_output=True, text=True).stdout)
    r = subprocess.run([bench, "-m", model, "-p", prompt, "-n", str(max_new), "-t", str(threads), "--json"],
                       check=True, capture_output=True, text=True)
    d = json.loads(r.stdout)
    if d["prompt_tokens"] != len(ids):
        sys.exit(f"error: prompt_tokens {d['prompt_tokens']} != {len(ids)} tokenized ids")
    return ids, d["token_ids"], d["finish_reason"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bench", default="build/engine/layerskip-bench")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--max-new", type=int, default=192)
    ap.add_argument("--max-len", type=int, default=512, help="trim sequences to this many tokens")
    ap.add_argument("--limit", type=int, default=0, help="first N prompts only (0: all)")
    ap.add_argument("--jobs", type=int, default=1, help="engine processes at a time (1 thread each)")
    ap.add_argument("--eos", type=int, default=2, help="appended when the answer stopped at EOS")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.prompts) if l.strip()]
    if a.limit:
        rows = rows[:a.limit]
    done = 0
    if os.path.exists(a.out):
        done = sum(1 for _ in open(a.out))
    rows = rows[done:]
    t0 = time.time()
    ntok = 0
    with open(a.out, "a") as f, open(a.out + ".jsonl", "a") as meta, ThreadPoolExecutor(a.jobs) as ex:
        futs = [ex.submit(run, a.bench, a.model, r["prompt"], a.max_new, 1) for r in rows]
        for i, (r, fu) in enumerate(zip(rows, futs)):
            p, g, why = fu.result()
            if why == "eos" and (not g or g[-1] != a.eos):
                g = g + [a.eos]
            seq = (p + g)[:a.max_len]
            f.write(" ".join(map(str, seq)) + "\n")
            f.flush()
            meta.write(json.dumps({"id": r["id"], "kind": r["kind"], "prompt_tokens": len(p),
                                   "answer_tokens": len(g), "finish": why}) + "\n")
            meta.flush()
            ntok += len(g)
            if (i + 1) % 10 == 0:
                print(f"{done + i + 1} sequences, {ntok / (time.time() - t0):.0f} answer tok/s", flush=True)
    print(f"done: {done + len(rows)} sequences in {a.out}")


if __name__ == "__main__":
    main()
