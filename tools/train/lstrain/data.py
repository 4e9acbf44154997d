"""Corpus, train/held-out split, tokenizer and batches.

The corpus is source code that ships with the machine: by default the Python
standard library of Debian's python3.11 (/usr/lib/python3.11/**/*.py), sorted
by path so every machine reads it in the same order. Test suites are left out
(they are most of the bytes and mostly boilerplate) and so is dist-packages
(it depends on what else is installed). A file is held out when a hash of its
relative path falls in the held-out fraction, so the split does not change
when files are added or removed.
"""
import hashlib
import json
import os

import numpy as np
import torch

EOT = "<|endoftext|>"
SKIP_DIRS = {"test", "tests", "idle_test", "dist-packages", "site-packages", "__pycache__"}


def list_files(root):
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--data-dir {root}: not a directory (point it at a folder of source files, "
                                f"e.g. /usr/lib/python3.11)")
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS)
        for f in sorted(files):
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(d, f), root))
    out.sort()
    if not out:
        raise FileNotFoundError(f"--data-dir {root}: no .py files found")
    return out


def is_heldout(rel, frac):
    h = int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little")
    return h / 2.0 ** 64 < frac


def read_corpus(root, heldout_frac, max_bytes=0):
    """-> (train texts, held-out texts, info dict). max_bytes > 0 keeps only
    the first files up to that many bytes (for tests)."""
    train, held = [], []
    info = {"data_dir": root, "files": 0, "train_files": 0, "heldout_files": 0,
            "train_bytes": 0, "heldout_bytes": 0}
    sha = hashlib.sha256()
    total = 0
    for rel in list_files(root):
        with open(os.path.join(root, rel), "rb") as f:
            raw = f.read()
        text = raw.decode("utf-8", errors="replace")
        sha.update(rel.encode() + b"\0" + raw)
        info["files"] += 1
        if is_heldout(rel, heldout_frac):
            held.append(text)
            info["heldout_files"] += 1
            info["heldout_bytes"] += len(raw)
        else:
            train.append(text)
            info["train_files"] += 1
            info["train_bytes"] += len(raw)
        total += len(raw)
        if max_bytes and total >= max_bytes:
            break
    info["sha256"] = sha.hexdigest()
    if not held:
        raise ValueError(f"--data-dir {root}: no file fell in the held-out split "
                         f"(--heldout-frac {heldout_frac}); raise it or use more data")
    return train, held, info


def train_tokenizer(texts, vocab_size, path):
    """Byte-level BPE (GPT-2 pre-tokenizer regex, no prefix space) with
    <|endoftext|> as id 0 = BOS = EOS; writes tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=tr)
    tok.save(path)
    return tok


def load_tokenizer(path):
    from tokenizers import Tokenizer
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--tokenizer {path}: no such file (train one with --vocab N, "
                                f"or point at a tokenizer.json)")
    tok = Tokenizer.from_file(path)
    if tok.token_to_id(EOT) is None:
        raise ValueError(f"--tokenizer {path}: has no {EOT} token (needed as document separator)")
    return tok


def write_tokenizer_files(tok_path, out_dir, max_len):
    """tokenizer.json + tokenizer_config.json for an HF directory."""
    import shutil
    tok = load_tokenizer(tok_path)
    dst = os.path.join(out_dir, "tokenizer.json")
    if os.path.abspath(tok_path) != os.path.abspath(dst):
        shutil.copyfile(tok_path, dst)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOT, "eos_token": EOT,
                   "unk_token": None, "add_bos_token": True, "add_eos_token": False,
                   "model_max_length": max_len, "clean_up_tokenization_spaces": False}, f, indent=2)
    del tok


def encode_docs(tok, texts):
    """one int32 stream: EOT doc EOT doc ... (each document starts after EOT,
    as a prompt does after the BOS the engine adds)"""
    eot = tok.token_to_id(EOT)
    parts = []
    for enc in tok.encode_batch(texts):
        parts.append(np.array([eot], dtype=np.int32))
        parts.append(np.asarray(enc.ids, dtype=np.int32))
    return np.concatenate(parts)


def load_streams(args, tok_path):
    """encoded train / held-out streams, cached in the output folder (keyed by
    the corpus and tokenizer hashes; never beside a committed tokenizer)."""
    train, held, info = read_corpus(args.data_dir, args.heldout_frac, args.max_data_bytes)
    with open(tok_path, "rb") as f:
        tsha = hashlib.sha256(f.read()).hexdigest()[:16]
    cache = os.path.join(args.out,
                         f"tokens-{info['sha256'][:16]}-{tsha}-{args.heldout_frac}.npz")
    if os.path.isfile(cache):
        z = np.load(cache)
        tr, he = z["train"], z["heldout"]
    else:
        tok = load_tokenizer(tok_path)
        tr, he = encode_docs(tok, train), encode_docs(tok, held)
        np.savez(cache, train=tr, heldout=he)
    info["train_tokens"] = int(tr.size)
    info["heldout_tokens"] = int(he.size)
    return tr, he, info


def sample_batch(stream, batch, seq, gen):
    """batch random windows of seq+1 tokens -> (inputs, targets) as int64"""
    if stream.size < seq + 2:
        raise ValueError(f"the training stream has {stream.size} tokens, fewer than --seq {seq} + 2: "
                         f"use more data or a shorter --seq")
    starts = torch.randint(0, stream.size - seq - 1, (batch,), generator=gen)
    rows = np.stack([stream[s:s + seq + 1] for s in starts.tolist()]).astype(np.int64)
    x = torch.from_numpy(rows)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous()


def heldout_windows(stream, seq, max_windows):
    """consecutive non-overlapping windows of the held-out stream, in order"""
    n = min(max_windows, (stream.size - 1) // seq)
    rows = np.stack([stream[i * seq:i * seq + seq + 1] for i in range(n)]).astype(np.int64)
    x = torch.from_numpy(rows)
    return x[:, :-1].contiguous(), x[:, 1:].contiguous()
