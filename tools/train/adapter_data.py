#!/usr/bin/env python3
"""Corpus for draft-adapter training (tools/train/adapter.py, docs/ADAPTER.md).

Collects text that Debian 12 carries on the machine, half code and half
prose, and writes it as one file per document plus two lists for
engine/dump-states:

  code:  the Python 3.11 standard library (/usr/lib/python3.11/**/*.py, no
         test suites, no dist-packages/site-packages) and C headers
         (/usr/include/**/*.h)
  prose: /usr/share/common-licenses/*, /usr/share/doc/**/README* (gzip
         ones decompressed), English man pages of sections 1, 5, 7 and 8
         (not gcloud/bq) rendered to plain text
         (man --nh --nj -l, MANWIDTH=100, col -bx)

Selection is deterministic: candidates are sorted by path; a file is held
out when the first 8 hex digits of sha256(path) / 2^32 < --heldout-frac;
each split then takes files in sha256 order until its byte budget per
category is met. Documents longer than --max-doc-bytes (held out: --heldout-max-doc-bytes)
are cut at the last
newline before the limit. The byte budgets approximate the token budgets
(about 3.3 bytes per token for code and 4.3 for prose with the SmolLM2
tokenizer); dump-states reports the exact token counts.

Writes OUT/docs/{train,heldout}/NNNNN-<category>.txt, OUT/train.list,
OUT/heldout.list and OUT/manifest.tsv (split, category, source path, bytes).
"""
import argparse
import glob
import gzip
import hashlib
import os
import subprocess
import sys


def h32(path):
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16)


def candidates():
    """{category/source: sorted list of paths}"""
    py = []
    for p in sorted(glob.glob("/usr/lib/python3.11/**/*.py", recursive=True)):
        parts = p.split("/")
        if any(x in ("test", "tests", "idle_test", "dist-packages", "site-packages") for x in parts):
            continue
        py.append(p)
    hdr = sorted(glob.glob("/usr/include/**/*.h", recursive=True))
    lic = sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p))
    readme = sorted(p for p in glob.glob("/usr/share/doc/**/README*", recursive=True)
                    if os.path.isfile(p) and not os.path.islink(p))
    man = []
    for sec in ("1", "5", "7", "8"):
        man += glob.glob(f"/usr/share/man/man{sec}/*.gz")
    # the Google Cloud SDK's thousands of near-identical gcloud pages would crowd out the rest
    man = sorted(p for p in man if os.path.isfile(p) and not os.path.basename(p).startswith(("gcloud", "bq")))
    return {"code/python": py, "code/c": hdr, "prose/license": lic,
            "prose/readme": readme, "prose/man": man}


def read_text(path):
    if path.startswith("/usr/share/man/"):
        env = dict(os.environ, MANWIDTH="100", LANG="C.UTF-8", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="0")
        try:
            r = subprocess.run(f"man --nh --nj -l {path!r} 2>/dev/null | col -bx", shell=True, env=env,
                               capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return ""
        return r.stdout.decode("utf-8", "replace")
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except OSError:
            return ""
    return data.decode("utf-8", "replace")


def clip(text, limit):
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    cut = b[:limit]
    nl = cut.rfind(b"\n")
    if nl > limit // 2:
        cut = cut[:nl + 1]
    return cut.decode("utf-8", "ignore")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train-bytes", type=int, default=500_000,
                    help="training bytes per category (code, prose); default 500000")
    ap.add_argument("--heldout-bytes", type=int, default=22_000,
                    help="held-out bytes per category; default 22000")
    ap.add_argument("--heldout-frac", type=float, default=0.05,
                    help="fraction of files eligible for the held-out split; default 0.05")
    ap.add_argument("--max-doc-bytes", type=int, default=12_000,
                    help="training documents are cut to this many bytes; default 12000")
    ap.add_argument("--heldout-max-doc-bytes", type=int, default=3_000,
                    help="held-out documents are cut to this many bytes; default 3000")
    a = ap.parse_args()

    cands = candidates()
    # within a category, sources share the budget: code 70%% python / 30%% C,
    # prose 10%% licenses / 45%% READMEs / 45%% man pages
    shares = {"code/python": 0.7, "code/c": 0.3, "prose/license": 0.1,
              "prose/readme": 0.45, "prose/man": 0.45}
    budgets = {"train": a.train_bytes, "heldout": a.heldout_bytes}
    os.makedirs(a.out, exist_ok=True)
    manifest = []
    for split in ("train", "heldout"):
        d = os.path.join(a.out, "docs", split)
        os.makedirs(d, exist_ok=True)
        paths = []
        for src, files in cands.items():
            want = int(budgets[split] * shares[src])
            held = [p for p in files if h32(p) / 2**32 < a.heldout_frac]
            pool = held if split == "heldout" else [p for p in files if h32(p) / 2**32 >= a.heldout_frac]
            pool.sort(key=lambda p: (hashlib.sha256(p.encode()).hexdigest(), p))
            got = 0
            for p in pool:
                if got >= want:
                    break
                text = clip(read_text(p), a.max_doc_bytes if split == "train" else a.heldout_max_doc_bytes)
                if len(text.strip()) < 200:
                    continue
                out = os.path.join(d, f"{len(paths):05d}-{src.replace('/', '-')}.txt")
                with open(out, "w", encoding="utf-8") as f:
                    f.write(text)
                n = len(text.encode("utf-8"))
                got += n
                paths.append(os.path.abspath(out))
                manifest.append((split, src, p, n))
            print(f"{split:8s} {src:14s} {got:8d} bytes from {sum(1 for m in manifest if m[0] == split and m[1] == src)} files",
                  file=sys.stderr)
        with open(os.path.join(a.out, f"{split}.list"), "w") as f:
            f.write("\n".join(paths) + "\n")
    with open(os.path.join(a.out, "manifest.tsv"), "w") as f:
        for m in manifest:
            f.write("\t".join(map(str, m)) + "\n")


if __name__ == "__main__":
    main()
