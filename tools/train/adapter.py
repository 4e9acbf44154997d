#!/usr/bin/env python3
"""Draft adapters (docs/ADAPTER.md): frequency table, training, evaluation, export.

A draft adapter is one Llama decoder layer (attention with the base model's
shape, optional SwiGLU feed-forward) that reads layer E-1's output of a
frozen model and is trained so that the model's own final norm + LM head on
its output agree with the full model's next-token choice. Training data come
from engine/dump-states (layer-E states as float16, the full model's top-K
logits and logsumexp; layout in engine/tools/dump_states.c).

Subcommands (each has --help):
  freq    rank the vocabulary by how often the full model's argmax picks each
          token on the training dump; coverage of held-out argmaxes
  train   train the block (resumable: --resume), held-out top-1 agreement
  eval    held-out top-1 agreement of plain early exit (and of a checkpoint)
  export  write the sidecar GGUF (matrices Q8_0 or F16, norms F16, metadata per docs/ADAPTER.md)

Math, exactly as the engine's ls_drafter (docs/ADAPTER.md):
  a = RMSNorm(h; attn_norm); q,k,v = Wq a, Wk a, Wv a; RoPE on q, k with
  adjacent pairs (x[2i], x[2i+1]) rotated by pos * theta^(-2i/hd); causal GQA
  attention softmax(q.k/sqrt(hd)); x = h + Wo o; with ffn_dim > 0:
  x = x + Wdown(silu(Wgate b) * Wup b), b = RMSNorm(x; ffn_norm);
  logits = Wout RMSNorm(x; output_norm).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

HDR_BYTES = 128


# ---------------------------------------------------------------- base model

class Base:
    """The frozen parts of the base model read from its GGUF file."""

    def __init__(self, path):
        import gguf
        self.path = path
        r = gguf.GGUFReader(path)
        self.reader = r

        def val(key, default=None):
            f = r.fields.get(key)
            return default if f is None else f.contents()

        self.arch = val("general.architecture")
        if self.arch != "llama":
            sys.exit(f"error: {path}: architecture {self.arch!r}: only llama is supported")
        a = self.arch
        self.n_layers = int(val(f"{a}.block_count"))
        self.dim = int(val(f"{a}.embedding_length"))
        self.ffn_dim = int(val(f"{a}.feed_forward_length"))
        self.n_heads = int(val(f"{a}.attention.head_count"))
        self.n_kv_heads = int(val(f"{a}.attention.head_count_kv", self.n_heads))
        self.head_dim = self.dim // self.n_heads
        self.rope_theta = float(val(f"{a}.rope.freq_base", 10000.0))
        self.eps = float(val(f"{a}.attention.layer_norm_rms_epsilon", 1e-5))
        if val(f"{a}.rope.scaling.type") not in (None, "none") or "rope_freqs.weight" in self._names():
            sys.exit(f"error: {path}: RoPE scaling is not supported by this trainer")
        self.tokens = val("tokenizer.ggml.tokens")
        self.n_vocab = len(self.tokens)
        self._tensors = {t.name: t for t in r.tensors}

    def _names(self):
        return {t.name for t in self.reader.tensors}

    def tensor(self, name):
        """float32 array (rows, cols) of a tensor, dequantized"""
        import gguf
        t = self._tensors[name]
        x = gguf.quants.dequantize(t.data, t.tensor_type)
        shape = [int(s) for s in reversed(t.shape)]  # ne = {cols, rows}
        return np.array(x.reshape(shape), dtype=np.float32)  # a writable copy

    def embedding(self):
        name = "output.weight" if "output.weight" in self._tensors else "token_embd.weight"
        return self.tensor(name)

    def vocab_hash(self):
        """FNV-1a 64 over each token's piece bytes followed by one 0 byte, in id order"""
        h = 0xcbf29ce484222325
        for tok in self.tokens:
            for b in tok.encode("utf-8") + b"\0":
                h ^= b
                h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        return h


# ---------------------------------------------------------------- dumps

class Dump:
    """An engine/dump-states file, memory-mapped."""

    def __init__(self, path):
        with open(path, "rb") as f:
            hdr = f.read(HDR_BYTES)
        if len(hdr) < HDR_BYTES or hdr[:8] != b"LSSTATE1":
            sys.exit(f"error: {path}: not a dump-states file (bad magic)")
        u = np.frombuffer(hdr[8:], dtype="<u4")
        ver, self.n_seq, self.T, self.dim, self.n_vocab, self.n_layers, self.K, n_ex = (int(x) for x in u[:8])
        if ver != 1:
            sys.exit(f"error: {path}: dump version {ver}, this reader knows 1")
        self.exits = [int(x) for x in u[8:8 + n_ex]]
        self.sep = int(u[24])
        T, D, K = self.T, self.dim, self.K
        self.rec = np.dtype([("tokens", "<i4", (T,)), ("states", "<f2", (n_ex, T, D)),
                             ("ids", "<i4", (T, K)), ("logits", "<f4", (T, K)), ("lse", "<f4", (T,))])
        size = os.path.getsize(path)
        if size != HDR_BYTES + self.n_seq * self.rec.itemsize:
            sys.exit(f"error: {path}: {size} bytes, expected {HDR_BYTES + self.n_seq * self.rec.itemsize} "
                     f"for {self.n_seq} sequences (truncated or still being written?)")
        self.data = np.memmap(path, dtype=self.rec, mode="r", offset=HDR_BYTES, shape=(self.n_seq,))

    def states(self, E):
        if E not in self.exits:
            sys.exit(f"error: the dump holds exits {self.exits}, not {E}")
        return self.data["states"][:, self.exits.index(E)]


def load_dumps(paths):
    ds = [Dump(p) for p in paths]
    for d in ds[1:]:
        if (d.T, d.dim, d.K, d.exits) != (ds[0].T, ds[0].dim, ds[0].K, ds[0].exits):
            sys.exit("error: the dumps differ in T, dim, K or exits")
    return ds


def gather(dumps, E):
    """(states f16 [n,T,D], ids [n,T,K], logits [n,T,K], lse [n,T], tokens [n,T]) in memory"""
    st = np.concatenate([np.asarray(d.states(E)) for d in dumps])
    ids = np.concatenate([np.asarray(d.data["ids"]) for d in dumps])
    lg = np.concatenate([np.asarray(d.data["logits"]) for d in dumps])
    lse = np.concatenate([np.asarray(d.data["lse"]) for d in dumps])
    tok = np.concatenate([np.asarray(d.data["tokens"]) for d in dumps])
    return st, ids, lg, lse, tok


# ---------------------------------------------------------------- frequency table

def freq_table(train_dumps, n_vocab):
    """all tokens the full model's argmax chose (by count desc, then corpus
    frequency desc, then id), then the other tokens seen in the corpus (by
    frequency desc, then id), then the rest by id: a full ranking"""
    chosen = np.zeros(n_vocab, np.int64)
    corpus = np.zeros(n_vocab, np.int64)
    for d in train_dumps:
        np.add.at(chosen, np.asarray(d.data["ids"][:, :, 0]).ravel(), 1)
        np.add.at(corpus, np.asarray(d.data["tokens"]).ravel(), 1)
    ids = np.arange(n_vocab)
    order = np.lexsort((ids, -corpus, -chosen))  # last key is primary
    return order.astype(np.int32), chosen, corpus


def load_table(path):
    """the draft-vocab ranking: a .npy from `freq`, or an adapter GGUF's layerskip.draft_vocab"""
    if path.endswith(".gguf"):
        import gguf
        f = gguf.GGUFReader(path).fields.get("layerskip.draft_vocab")
        if f is None:
            sys.exit(f"error: {path}: no layerskip.draft_vocab")
        return np.array(f.contents(), dtype=np.int32)
    return np.load(path)


def cmd_freq(a):
    base = Base(a.model)
    tr = load_dumps(a.train)
    order, chosen, corpus = freq_table(tr, base.n_vocab)
    np.save(a.out, order)
    rank = np.empty(base.n_vocab, np.int64)
    rank[order] = np.arange(base.n_vocab)
    print(f"tokens chosen by the full model: {int((chosen > 0).sum())}, seen in the corpus: "
          f"{int((corpus > 0).sum())}, table: {len(order)} entries -> {a.out}")
    rows = []
    for name, dumps in (("train", tr), ("heldout", load_dumps(a.heldout) if a.heldout else [])):
        if not dumps:
            continue
        top1 = np.concatenate([np.asarray(d.data["ids"][:, :, 0]).ravel() for d in dumps])
        cov = {n: float((rank[top1] < n).mean()) for n in (1024, 2048, 4096, 8192, 16384)}
        rows.append((name, len(top1), cov))
        print(f"{name}: {len(top1)} positions; argmax within top N: " +
              ", ".join(f"{n}: {c:.4f}" for n, c in cov.items()))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"chosen": int((chosen > 0).sum()), "seen": int((corpus > 0).sum()),
                       "coverage": {r[0]: {"positions": r[1], **{str(k): v for k, v in r[2].items()}}
                                    for r in rows}}, f, indent=1)


# ---------------------------------------------------------------- the block

def build_block(torch, base, ffn_dim):
    nn = torch.nn
    D, H, KV, hd = base.dim, base.n_heads, base.n_kv_heads, base.head_dim

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = nn.Parameter(torch.ones(D))
            self.wq = nn.Parameter(torch.empty(H * hd, D))
            self.wk = nn.Parameter(torch.empty(KV * hd, D))
            self.wv = nn.Parameter(torch.empty(KV * hd, D))
            self.wo = nn.Parameter(torch.zeros(D, H * hd))
            self.ffn_dim = ffn_dim
            if ffn_dim:
                self.ffn_norm = nn.Parameter(torch.ones(D))
                self.w_gate = nn.Parameter(torch.empty(ffn_dim, D))
                self.w_up = nn.Parameter(torch.empty(ffn_dim, D))
                self.w_down = nn.Parameter(torch.zeros(D, ffn_dim))
            for p in (self.wq, self.wk, self.wv) + ((self.w_gate, self.w_up) if ffn_dim else ()):
                nn.init.normal_(p, std=D ** -0.5)
            inv = base.rope_theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            self.register_buffer("inv_freq", inv.float(), persistent=False)

        def rms(self, x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + base.eps) * w

        def rope(self, x, pos):
            # x [B, heads, T, hd]; pairs (x[2i], x[2i+1]) rotated by pos*theta^(-2i/hd)
            ang = pos[:, None].float() * self.inv_freq[None, :]  # [T, hd/2]
            c, s = ang.cos(), ang.sin()
            x0, x1 = x[..., 0::2], x[..., 1::2]
            return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)

        def forward(self, h):
            B, T, _ = h.shape
            pos = torch.arange(T, device=h.device)
            a = self.rms(h, self.attn_norm)
            q = (a @ self.wq.t()).view(B, T, H, hd).transpose(1, 2)
            k = (a @ self.wk.t()).view(B, T, KV, hd).transpose(1, 2)
            v = (a @ self.wv.t()).view(B, T, KV, hd).transpose(1, 2)
            q, k = self.rope(q, pos), self.rope(k, pos)
            rep = H // KV  # head j uses kv head j // rep
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
            mask = torch.ones(T, T, dtype=torch.bool, device=h.device).triu(1)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            o = (att @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = h + o @ self.wo.t()
            if self.ffn_dim:
                b = self.rms(x, self.ffn_norm)
                x = x + (torch.nn.functional.silu(b @ self.w_gate.t()) * (b @ self.w_up.t())) @ self.w_down.t()
            return x

    return Block()


def init_from_gguf(torch, block, path):
    """the weights of an exported adapter GGUF (F32, F16 or Q8_0, dequantized)"""
    import gguf
    r = gguf.GGUFReader(path)
    t = {x.name: x for x in r.tensors}
    names = {"attn_norm": "adapter.attn_norm.weight", "wq": "adapter.attn_q.weight", "wk": "adapter.attn_k.weight",
             "wv": "adapter.attn_v.weight", "wo": "adapter.attn_output.weight"}
    if block.ffn_dim:
        names.update(ffn_norm="adapter.ffn_norm.weight", w_gate="adapter.ffn_gate.weight",
                     w_up="adapter.ffn_up.weight", w_down="adapter.ffn_down.weight")
    with torch.no_grad():
        for attr, name in names.items():
            if name not in t:
                sys.exit(f"error: {path}: no tensor {name}")
            p = getattr(block, attr)
            x = np.asarray(gguf.quants.dequantize(t[name].data, t[name].tensor_type), dtype=np.float32)
            x = np.array(x.reshape(p.shape))
            p.copy_(torch.from_numpy(x))


def init_from_layer(torch, block, base, layer):
    """copy a base layer's weights (dequantized; GGUF rows are already in the
    pairwise RoPE layout the block uses)"""
    p = f"blk.{layer}."
    with torch.no_grad():
        block.attn_norm.copy_(torch.from_numpy(base.tensor(p + "attn_norm.weight").ravel()))
        block.wq.copy_(torch.from_numpy(base.tensor(p + "attn_q.weight")))
        block.wk.copy_(torch.from_numpy(base.tensor(p + "attn_k.weight")))
        block.wv.copy_(torch.from_numpy(base.tensor(p + "attn_v.weight")))
        block.wo.copy_(torch.from_numpy(base.tensor(p + "attn_output.weight")))
        if block.ffn_dim:
            n = block.ffn_dim
            block.ffn_norm.copy_(torch.from_numpy(base.tensor(p + "ffn_norm.weight").ravel()))
            block.w_gate.copy_(torch.from_numpy(base.tensor(p + "ffn_gate.weight")[:n]))
            block.w_up.copy_(torch.from_numpy(base.tensor(p + "ffn_up.weight")[:n]))
            block.w_down.copy_(torch.from_numpy(base.tensor(p + "ffn_down.weight")[:, :n]))


class Head:
    """frozen final norm + LM head, restricted to the first N table entries"""

    def __init__(self, torch, base, order, n_draft):
        self.torch = torch
        self.eps = base.eps
        self.norm = torch.from_numpy(base.tensor("output_norm.weight").ravel())
        emb = base.embedding()
        self.draft_ids = torch.from_numpy(order[:n_draft].astype(np.int64))
        self.w = torch.from_numpy(emb[order[:n_draft]])  # [N, D]
        self.w_full = torch.from_numpy(emb)
        self.slot = torch.full((base.n_vocab,), -1, dtype=torch.long)
        self.slot[self.draft_ids] = torch.arange(n_draft)

    def normed(self, x):
        return x * self.torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.norm

    def logits(self, x):
        return self.normed(x) @ self.w.t()

    def logits_full(self, x):
        return self.normed(x) @ self.w_full.t()


def soft_targets(torch, head, ids, lg, lse):
    """teacher probabilities of its top-K tokens (exact, with the logsumexp),
    kept where the token is in the draft vocab and renormalised over those:
    returns (slots [n,K] clamped >= 0, weights [n,K])"""
    p = torch.exp(lg - lse[..., None])
    slot = head.slot[ids]
    p = torch.where(slot >= 0, p, torch.zeros_like(p))
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-9)
    return slot.clamp_min(0), p


def real_len(tok):
    """positions up to the last real token of a batch (dumps from --tokens-file pad with -1)"""
    valid = (np.asarray(tok) >= 0).any(0)
    return int(np.nonzero(valid)[0][-1]) + 1 if valid.any() else 0


def agreement(torch, block, head, st, ids, bs=16, full_head=False, tok=None):
    """fraction of positions whose argmax over the draft vocab (or the full
    vocab with full_head) is the full model's top-1; positions whose token is
    -1 (padding) are not counted"""
    hit, n = 0, 0
    with torch.no_grad():
        for i in range(0, len(st), bs):
            L = st.shape[1] if tok is None else real_len(tok[i:i + bs])
            if L == 0:
                continue
            h = torch.from_numpy(np.asarray(st[i:i + bs, :L], dtype=np.float32))
            x = block(h) if block is not None else h
            if full_head:
                pred = head.logits_full(x).argmax(-1)
            else:
                pred = head.draft_ids[head.logits(x).argmax(-1)]
            t1 = torch.from_numpy(np.asarray(ids[i:i + bs, :L, 0], dtype=np.int64))
            m = torch.ones_like(t1, dtype=torch.bool) if tok is None else \
                torch.from_numpy(np.asarray(tok[i:i + bs, :L]) >= 0)
            hit += int(((pred == t1) & m).sum())
            n += int(m.sum())
    return hit / max(n, 1)


def setup_torch(threads):
    import torch
    torch.set_num_threads(threads)
    return torch


def cmd_train(a):
    torch = setup_torch(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    base = Base(a.model)
    order = load_table(a.table)
    head = Head(torch, base, order, a.draft_vocab)
    tr = load_dumps(a.train)
    ho = load_dumps(a.heldout)
    st, ids, lg, lse, tok = gather(tr, a.exit)
    hst, hids, _, _, htok = gather(ho, a.exit)
    if a.heldout_seqs:
        hst, hids, htok = hst[:a.heldout_seqs], hids[:a.heldout_seqs], htok[:a.heldout_seqs]
    T = st.shape[1]
    groups = [(st, ids, lg, lse, tok, a.batch)]
    if a.train2:
        g2 = gather(load_dumps(a.train2), a.exit)
        groups.append(g2 + (a.batch2 or a.batch,))
    real = [int((g[4] >= 0).sum()) for g in groups]
    print(f"train: {len(st)} sequences x {T} ({real[0]} real positions)"
          + (f", second set (--train2, {a.mix:.0%} of steps): {len(groups[1][0])} x {groups[1][0].shape[1]} "
             f"({real[1]} real positions)" if a.train2 else "")
          + f", held out: {int((htok >= 0).sum())}; "
          f"E {a.exit}, ffn_dim {a.ffn_dim}, draft vocab {a.draft_vocab}, init {a.init}", flush=True)
    block = build_block(torch, base, a.ffn_dim)
    if a.init.startswith("layer:"):
        init_from_layer(torch, block, base, int(a.init.split(":")[1]))
    elif a.init.startswith("gguf:"):
        init_from_gguf(torch, block, a.init[5:])
    elif a.init.startswith("ckpt:"):
        block.load_state_dict(torch.load(a.init[5:])["block"])
    elif a.init != "random":
        sys.exit("error: --init: random, layer:N, gguf:ADAPTER.gguf or ckpt:ckpt.pt")
    nparams = sum(p.numel() for p in block.parameters())
    decay = [p for n, p in block.named_parameters() if "norm" not in n]
    nodecay = [p for n, p in block.named_parameters() if "norm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": nodecay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.98))
    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "ckpt.pt")
    step, elapsed = 0, 0.0
    if a.resume and os.path.exists(ckpt):
        s = torch.load(ckpt)
        block.load_state_dict(s["block"])
        opt.load_state_dict(s["opt"])
        step, elapsed = s["step"], s["elapsed"]
        rng.bit_generator.state = s["np_rng"]
        torch.set_rng_state(s["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    cfg = {k: v for k, v in vars(a).items() if k != "func"}
    cfg.update(n_params=nparams, dim=base.dim, base_ffn_dim=base.ffn_dim)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)

    def progress(s):
        """fraction of the run done: by steps, or by training time when
        --time-budget is set and ahead (then the run ends when time is up)"""
        f = (s - a.warmup) / max(1, a.steps - a.warmup)
        if a.time_budget > 0:
            f = max(f, elapsed / (60 * a.time_budget))
        return f

    def lr_at(s):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        f = progress(s)
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(f, 1.0))))

    def save():
        tmp = ckpt + ".tmp"
        torch.save({"block": block.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                    "np_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "config": cfg}, tmp)
        os.replace(tmp, ckpt)

    log = open(os.path.join(a.out, "log.jsonl"), "a")
    if step == 0:
        base_agree = agreement(torch, None, head, hst, hids, tok=htok)
        print(f"held-out top-1 agreement of plain early exit at E {a.exit} (draft vocab): {base_agree:.4f}", flush=True)
    t_last, tok_last = time.time(), 0
    while step < a.steps and not (step > a.warmup and progress(step) >= 1.0):
        t0 = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        gi = 1 if len(groups) > 1 and rng.random() < a.mix else 0
        g_st, g_ids, g_lg, g_lse, g_tok, g_b = groups[gi]
        idx = np.sort(rng.integers(0, len(g_st), g_b))
        L = real_len(g_tok[idx])
        h = torch.from_numpy(g_st[idx, :L].astype(np.float32))
        slot, w = soft_targets(torch, head, torch.from_numpy(g_ids[idx, :L].astype(np.int64)),
                               torch.from_numpy(g_lg[idx, :L]), torch.from_numpy(g_lse[idx, :L]))
        m = torch.from_numpy(g_tok[idx, :L] >= 0).float()
        x = block(h)
        logp = head.logits(x).log_softmax(-1)
        loss = -((logp.gather(-1, slot) * w).sum(-1) * m).sum() / m.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(block.parameters(), a.clip)
        opt.step()
        step += 1
        elapsed += time.time() - t0
        tok_last += int(m.sum())
        rec = {"step": step, "loss": float(loss), "lr": lr_at(step - 1)}
        last = step == a.steps or (step > a.warmup and progress(step) >= 1.0)
        if step % a.log_every == 0 or last:
            now = time.time()
            msg = f"step {step}/{a.steps} lr {rec['lr']:.2e} loss {float(loss):.4f} | {tok_last / (now - t_last):.0f} tok/s"
            t_last, tok_last = now, 0
            if step % a.eval_every == 0 or last:
                block.eval()
                rec["heldout_top1"] = agreement(torch, block, head, hst, hids, tok=htok)
                block.train()
                msg += f" | held-out top-1 {rec['heldout_top1']:.4f} | {elapsed / 60:.1f} min"
                t_last = time.time()
            print(msg, flush=True)
        log.write(json.dumps(rec) + "\n")
        if step % a.ckpt_every == 0 or last:
            save()
    log.close()
    final = agreement(torch, block, head, hst, hids, tok=htok)
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"exit": a.exit, "ffn_dim": a.ffn_dim, "draft_vocab": a.draft_vocab, "init": a.init,
                   "steps": step, "train_minutes": elapsed / 60, "heldout_top1": final, "n_params": nparams}, f,
                  indent=1)
    print(f"done: held-out top-1 agreement {final:.4f}, {elapsed / 60:.1f} min of training", flush=True)


def load_block(torch, base, ckpt):
    if ckpt.endswith(".gguf"):  # an exported adapter
        import gguf
        r = gguf.GGUFReader(ckpt)
        cfg = {"exit": int(r.fields["layerskip.adapter.exit_layer"].contents()),
               "ffn_dim": int(r.fields["layerskip.adapter.ffn_dim"].contents())}
        block = build_block(torch, base, cfg["ffn_dim"])
        init_from_gguf(torch, block, ckpt)
        block.eval()
        return block, cfg
    s = torch.load(ckpt)
    cfg = s["config"]
    block = build_block(torch, base, cfg["ffn_dim"])
    block.load_state_dict(s["block"])
    block.eval()
    return block, cfg


def cmd_eval(a):
    torch = setup_torch(a.threads)
    base = Base(a.model)
    order = load_table(a.table)
    ho = load_dumps(a.heldout)
    res = {}
    for n in a.draft_vocab:
        head = Head(torch, base, order, n)
        for E in ho[0].exits:
            hst, hids, _, _, htok = gather(ho, E)
            res[f"plain E{E} N{n}"] = agreement(torch, None, head, hst, hids, tok=htok)
        if n == a.draft_vocab[0]:
            for E in ho[0].exits:
                hst, hids, _, _, htok = gather(ho, E)
                res[f"plain E{E} full"] = agreement(torch, None, head, hst, hids, full_head=True, tok=htok)
        for c in a.ckpt or []:
            block, cfg = load_block(torch, base, c)
            hst, hids, _, _, htok = gather(ho, cfg["exit"])
            res[f"adapter {c} E{cfg['exit']} N{n}"] = agreement(torch, block, head, hst, hids, tok=htok)
    for k, v in res.items():
        print(f"{k}: {v:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


def cmd_export(a):
    import gguf
    torch = setup_torch(1)
    base = Base(a.model)
    order = load_table(a.table)
    if a.draft_vocab_entries:
        order = order[:a.draft_vocab_entries]
    w = gguf.GGUFWriter(a.out, "layerskip-adapter")
    has_block = bool(a.ckpt)
    E, ffn = a.exit, 0
    if has_block:
        block, cfg = load_block(torch, base, a.ckpt)
        E, ffn = cfg["exit"], cfg["ffn_dim"]
    if E is None:
        sys.exit("error: --exit is required without --ckpt")
    if ffn > base.ffn_dim:
        sys.exit(f"error: ffn_dim {ffn} exceeds the base model's {base.ffn_dim}")
    w.add_uint32("layerskip.adapter.version", 1)
    w.add_uint32("layerskip.adapter.exit_layer", E)
    w.add_uint32("layerskip.adapter.ffn_dim", ffn)
    w.add_bool("layerskip.adapter.has_block", has_block)
    w.add_string("layerskip.base.architecture", base.arch)
    w.add_uint32("layerskip.base.block_count", base.n_layers)
    w.add_uint32("layerskip.base.embedding_length", base.dim)
    w.add_uint32("layerskip.base.feed_forward_length", base.ffn_dim)
    w.add_uint32("layerskip.base.head_count", base.n_heads)
    w.add_uint32("layerskip.base.head_count_kv", base.n_kv_heads)
    w.add_uint32("layerskip.base.vocab_size", base.n_vocab)
    w.add_uint64("layerskip.base.vocab_hash", base.vocab_hash())
    w.add_array("layerskip.draft_vocab", [int(x) for x in order])
    if has_block:
        def f16(t):
            return t.detach().numpy().astype(np.float16)

        def mat(t):  # matrices: F16, or Q8_0 (half the bytes, cheaper drafts); norms stay F16
            if a.dtype == "f16":
                return f16(t), {}
            q = gguf.quants.quantize(t.detach().numpy().astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            return q, {"raw_dtype": gguf.GGMLQuantizationType.Q8_0}
        w.add_tensor("adapter.attn_norm.weight", f16(block.attn_norm))
        for name, t in [("attn_q", block.wq), ("attn_k", block.wk), ("attn_v", block.wv), ("attn_output", block.wo)]:
            data, kw = mat(t)
            w.add_tensor(f"adapter.{name}.weight", data, **kw)
        if ffn:
            w.add_tensor("adapter.ffn_norm.weight", f16(block.ffn_norm))
            for name, t in [("ffn_gate", block.w_gate), ("ffn_up", block.w_up), ("ffn_down", block.w_down)]:
                data, kw = mat(t)
                w.add_tensor(f"adapter.{name}.weight", data, **kw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {a.out}: E {E}, ffn_dim {ffn}, has_block {has_block}, draft_vocab {len(order)} entries, "
          f"vocab_hash {base.vocab_hash():#018x}, {os.path.getsize(a.out)} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    model = dict(default="models/SmolLM2-135M-Instruct.Q4_1.gguf", help="base model GGUF (default: %(default)s)")

    p = sub.add_parser("freq", help="frequency table (draft vocab ranking) and coverage")
    p.add_argument("--model", **model)
    p.add_argument("--train", nargs="+", required=True, help="training dumps (engine/dump-states)")
    p.add_argument("--heldout", nargs="*", help="held-out dumps, for coverage")
    p.add_argument("--out", required=True, help="where the ranking goes (.npy, int32 ids)")
    p.add_argument("--json", help="coverage numbers as JSON")
    p.set_defaults(func=cmd_freq)

    p = sub.add_parser("train", help="train an adapter block")
    p.add_argument("--model", **model)
    p.add_argument("--train", nargs="+", required=True, help="training dumps")
    p.add_argument("--heldout", nargs="+", required=True, help="held-out dumps")
    p.add_argument("--table", required=True, help="ranking from `freq` (.npy) or an adapter GGUF (its layerskip.draft_vocab)")
    p.add_argument("--out", required=True, help="run folder (ckpt.pt, log.jsonl, summary.json)")
    p.add_argument("--exit", type=int, required=True, help="E: the block reads layer E-1's output")
    p.add_argument("--ffn-dim", type=int, default=1536, help="feed-forward width, 0 = attention only (default 1536)")
    p.add_argument("--init", default="random", help="random (output projections zero: starts as plain exit), "
                   "layer:N (a copy of base layer N, dequantized), gguf:ADAPTER.gguf (an exported adapter's "
                   "weights) or ckpt:ckpt.pt (a checkpoint's block; optimizer state not kept)")
    p.add_argument("--train2", nargs="+", help="a second set of training dumps (may differ in T; e.g. chat "
                   "sequences from dump-states --tokens-file)")
    p.add_argument("--mix", type=float, default=0.7, help="fraction of steps drawn from --train2 (default 0.7)")
    p.add_argument("--batch2", type=int, default=0, help="sequences per --train2 step (default: --batch)")
    p.add_argument("--draft-vocab", type=int, default=8192, help="student logits over the first N table entries")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--time-budget", type=float, default=0.0,
                   help="minutes of training: the cosine schedule follows whichever of steps and time is "
                        "further along, and the run ends at the budget (0: steps only, reproducible)")
    p.add_argument("--batch", type=int, default=8, help="sequences per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--heldout-seqs", type=int, default=0, help="evaluate on the first N held-out sequences (0: all)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="held-out top-1 agreement: plain early exit and checkpoints")
    p.add_argument("--model", **model)
    p.add_argument("--heldout", nargs="+", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--ckpt", nargs="*", help="adapter checkpoints (ckpt.pt)")
    p.add_argument("--draft-vocab", type=int, nargs="+", default=[8192])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write the sidecar GGUF (docs/ADAPTER.md)")
    p.add_argument("--model", **model)
    p.add_argument("--table", required=True)
    p.add_argument("--ckpt", help="trained block (ckpt.pt); without it a frequency table only (needs --exit)")
    p.add_argument("--exit", type=int, help="E when writing a table only")
    p.add_argument("--draft-vocab-entries", type=int, default=0, help="keep the first N table entries (0: all)")
    p.add_argument("--dtype", choices=["f16", "q8_0"], default="q8_0",
                   help="storage of the block's matrices (default: %(default)s; norms are F16)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
