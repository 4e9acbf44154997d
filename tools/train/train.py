#!/usr/bin/env python3
"""train.py: LayerSkip training for Llama-architecture models.

Trains from scratch (a new model and, if asked, a new byte-level BPE
tokenizer) or continues pretraining a Hugging Face checkpoint (--init DIR),
with LayerSkip's layer dropout and early-exit loss (see lstrain/recipe.py).
Writes resumable checkpoints (OUT/ckpt.pt), a Hugging Face directory
(OUT/hf) and optionally a GGUF file. Run with the venv's python
(tools/train/setup_venv.sh); --help lists every option.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lstrain import data, export, recipe  # noqa: E402
from lstrain.model import LlamaConfig, LlamaForCausalLM  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--data-dir", default="/usr/lib/python3.11", help="folder of .py files (sorted; test/ folders skipped)")
    g.add_argument("--heldout-frac", type=float, default=0.05, help="fraction of files held out (by path hash)")
    g.add_argument("--max-data-bytes", type=int, default=0, help="read only the first files up to this many bytes (0: all)")
    g.add_argument("--tokenizer", help="tokenizer.json to use (default: --init's, or train one into OUT with --vocab)")
    g.add_argument("--tokenizer-only", action="store_true", help="train OUT/tokenizer.json (and encode the corpus), then stop")
    g = p.add_argument_group("model (from scratch; ignored with --init)")
    g.add_argument("--init", help="Hugging Face directory to continue pretraining from")
    g.add_argument("--vocab", type=int, default=2048, help="vocabulary size (of the tokenizer trained when none is given)")
    g.add_argument("--dim", type=int, default=192)
    g.add_argument("--layers", type=int, default=12)
    g.add_argument("--heads", type=int, default=3)
    g.add_argument("--kv-heads", type=int, default=3)
    g.add_argument("--ffn", type=int, default=512)
    g.add_argument("--ctx", type=int, default=512, help="max_position_embeddings written to the config")
    g.add_argument("--norm-eps", type=float, default=1e-5)
    g.add_argument("--rope-theta", type=float, default=10000.0)
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=1000)
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--seq", type=int, default=256, help="training window length (<= --ctx)")
    g.add_argument("--lr", type=float, default=3e-3)
    g.add_argument("--min-lr-frac", type=float, default=0.1, help="cosine decay ends at lr * this")
    g.add_argument("--warmup", type=int, default=50)
    g.add_argument("--weight-decay", type=float, default=0.1)
    g.add_argument("--beta1", type=float, default=0.9)
    g.add_argument("--beta2", type=float, default=0.95)
    g.add_argument("--grad-clip", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=1234)
    g.add_argument("--threads", type=int, default=2)
    g = p.add_argument_group("LayerSkip")
    g.add_argument("--dropout-pmax", type=float, default=0.0, help="layer dropout rate of the last layer (0: off)")
    g.add_argument("--dropout-scale", choices=recipe.DROPOUT_SCALES, default="exp",
                   help="how the rate rises with depth, from 0 at the first layer")
    g.add_argument("--early-exit", choices=recipe.CURRICULA, default="none",
                   help="which exits' losses count: none (final only), all, rotational, gradual")
    g.add_argument("--exit-weights", choices=recipe.WEIGHT_SCALES, default="l",
                   help="unnormalised exit weight: l (l), sum_l (1+..+l), one")
    g.add_argument("--e-scale", type=float, default=1.0, help="multiplier of every non-final exit's weight")
    g.add_argument("--rotation", type=int, default=3, help="rotational curriculum: exits l with l %% R == step %% R")
    g.add_argument("--gradual-frac", type=float, default=0.5,
                   help="gradual curriculum: fraction of training over which exits switch on, last layer first")
    g = p.add_argument_group("output")
    g.add_argument("--out", required=True, help="output folder (ckpt.pt, hf/, log.jsonl, tokenizer.json)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    g.add_argument("--ckpt-every", type=int, default=100, help="steps between checkpoints (and at the end)")
    g.add_argument("--stop-at", type=int, default=0, help="stop after this step (0: --steps); for tests of resume")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=0, help="held-out loss per exit every N steps (0: only at the end)")
    g.add_argument("--eval-windows", type=int, default=16, help="held-out windows of --seq tokens per evaluation")
    g.add_argument("--gguf", help="also write this GGUF file at the end")
    g.add_argument("--gguf-type", choices=export.GGUF_TYPES, default="f16")
    g.add_argument("--name", default="lscode", help="general.name in the GGUF")
    a = p.parse_args(argv)
    if a.steps < 1:
        p.error(f"--steps {a.steps}: must be >= 1")
    if a.batch < 1 or a.seq < 2:
        p.error("--batch must be >= 1 and --seq >= 2")
    if not 0.0 < a.heldout_frac < 1.0:
        p.error(f"--heldout-frac {a.heldout_frac}: must be in (0, 1)")
    return a


def lr_at(a, step):
    """linear warmup, then cosine decay to lr * min_lr_frac"""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def make_optimizer(model, a):
    """AdamW; no weight decay on norms (1-D)"""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=a.lr, betas=(a.beta1, a.beta2), eps=1e-8)


def exit_losses(model, x, y, keep, layers):
    """{layer: mean cross-entropy of that layer's exit} for the given layers"""
    last = model.cfg.num_hidden_layers - 1
    logits, hidden = model(x, keep=keep, return_hidden=True)
    out = {}
    for l in layers:
        lg = logits if l == last else model.exit_head(hidden[l])
        out[l] = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1))
    return out


@torch.no_grad()
def evaluate(model, hx, hy, batch):
    """held-out loss and top-1 accuracy of every exit: ([loss], [acc])"""
    model.eval()
    L = model.cfg.num_hidden_layers
    tot_loss = [0.0] * L
    tot_hit = [0] * L
    n = 0
    for i in range(0, hx.shape[0], batch):
        x, y = hx[i:i + batch], hy[i:i + batch]
        _, hidden = model(x, return_hidden=True)
        for l in range(L):
            lg = model.exit_head(hidden[l]).reshape(-1, model.cfg.vocab_size)
            tot_loss[l] += F.cross_entropy(lg, y.reshape(-1), reduction="sum").item()
            tot_hit[l] += (lg.argmax(-1) == y.reshape(-1)).sum().item()
        n += y.numel()
    model.train()
    return [v / n for v in tot_loss], [v / n for v in tot_hit]


def fmt_exits(d):
    return " ".join(f"L{l + 1} {v:.3f}" for l, v in sorted(d.items()))


def setup(a):
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    tok_path = a.tokenizer
    if a.init:
        model, init_tok = export.load_hf(a.init)
        model.train()
        tok_path = tok_path or init_tok
    if not tok_path:
        tok_path = os.path.join(a.out, "tokenizer.json")
        if not os.path.isfile(tok_path):
            train_txt, _, _ = data.read_corpus(a.data_dir, a.heldout_frac, a.max_data_bytes)
            t0 = time.time()
            data.train_tokenizer(train_txt, a.vocab, tok_path)
            print(f"trained a {a.vocab}-token byte-level BPE on the training split in {time.time() - t0:.1f}s "
                  f"-> {tok_path}", flush=True)
    tok = data.load_tokenizer(tok_path)
    eot = tok.token_to_id(data.EOT)
    if not a.init:
        cfg = LlamaConfig(vocab_size=a.vocab, hidden_size=a.dim, num_hidden_layers=a.layers,
                          num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, intermediate_size=a.ffn,
                          rms_norm_eps=a.norm_eps, rope_theta=a.rope_theta, max_position_embeddings=a.ctx,
                          tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot)
        if tok.get_vocab_size() > cfg.vocab_size:
            raise SystemExit(f"error: --tokenizer {tok_path} has {tok.get_vocab_size()} tokens, more than "
                             f"--vocab {a.vocab}: raise --vocab")
        model = LlamaForCausalLM(cfg)
        g = torch.Generator().manual_seed(a.seed)
        model.init_weights(g)
    elif tok.get_vocab_size() > model.cfg.vocab_size:
        raise SystemExit(f"error: --tokenizer {tok_path} has more tokens than --init's vocab_size {model.cfg.vocab_size}")
    if a.seq > model.cfg.max_position_embeddings:
        raise SystemExit(f"error: --seq {a.seq} is longer than the model's context {model.cfg.max_position_embeddings}")
    return model, tok_path


def main(argv=None):
    a = parse_args(argv)
    try:
        return run(a)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(a):
    torch.set_num_threads(a.threads)
    ckpt = os.path.join(a.out, "ckpt.pt")
    if a.resume and not os.path.isfile(ckpt):
        raise FileNotFoundError(f"--resume: {ckpt} does not exist (run without --resume to start)")
    model, tok_path = setup(a)
    if a.tokenizer_only:
        data.load_streams(a, tok_path)
        return 0
    train_stream, held_stream, info = data.load_streams(a, tok_path)
    cfg = model.cfg
    L = cfg.num_hidden_layers
    rates = recipe.dropout_rates(L, a.dropout_pmax, a.dropout_scale)
    scales = recipe.exit_scales(L, a.exit_weights, a.e_scale)
    opt = make_optimizer(model, a)
    gen_data = torch.Generator().manual_seed(a.seed + 1)
    gen_drop = torch.Generator().manual_seed(a.seed + 2)
    step = 0
    if a.resume:
        st = torch.load(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen_data.set_state(st["gen_data"])
        gen_drop.set_state(st["gen_drop"])
        step = st["step"]
        print(f"resumed from {ckpt} at step {step}", flush=True)
    hx, hy = data.heldout_windows(held_stream, a.seq, a.eval_windows)
    print(f"model: {model.n_params() / 1e6:.2f}M parameters, {L} layers, dim {cfg.hidden_size}, "
          f"vocab {cfg.vocab_size}; data: {info['train_tokens']} train / {info['heldout_tokens']} held-out tokens "
          f"({info['train_files']}/{info['heldout_files']} files, corpus sha256 {info['sha256'][:16]})", flush=True)
    print("layer dropout: " + " ".join(f"{r:.3f}" for r in rates) + f"; early exit: {a.early_exit}", flush=True)
    log = open(os.path.join(a.out, "log.jsonl"), "a")
    stop = a.stop_at or a.steps
    model.train()
    t0, tok_seen = time.time(), 0
    while step < min(stop, a.steps):
        lr = lr_at(a, step)
        for grp in opt.param_groups:
            grp["lr"] = lr
        x, y = data.sample_batch(train_stream, a.batch, a.seq, gen_data)
        keep = recipe.sample_keep(rates, a.batch, gen_drop) if a.dropout_pmax > 0 else None
        active = recipe.active_exits(a.early_exit, L, step, a.steps, a.rotation, a.gradual_frac)
        w = recipe.exit_weights(active, scales)
        losses = exit_losses(model, x, y, keep, list(w))
        loss = sum(w[l] * losses[l] for l in w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip) if a.grad_clip > 0 else torch.tensor(0.0)
        opt.step()
        step += 1
        tok_seen += x.numel()
        rec = {"step": step, "lr": lr, "loss": loss.item(), "grad_norm": float(gnorm),
               "exits": {f"L{l + 1}": v.item() for l, v in losses.items()}}
        if step % a.log_every == 0 or step == 1:
            dt = time.time() - t0
            print(f"step {step}/{a.steps} lr {lr:.2e} loss {rec['loss']:.4f} | exits {fmt_exits({l: v.item() for l, v in losses.items()})}"
                  f" | {tok_seen / max(dt, 1e-9):.0f} tok/s", flush=True)
        if a.eval_every and step % a.eval_every == 0 and step < a.steps:
            el, ea = evaluate(model, hx, hy, a.batch)
            rec["heldout_loss"], rec["heldout_acc"] = el, ea
            print(f"eval step {step}: held-out loss {fmt_exits(dict(enumerate(el)))}", flush=True)
        log.write(json.dumps(rec) + "\n")
        if step % a.ckpt_every == 0 or step == min(stop, a.steps):
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen_data": gen_data.get_state(),
                        "gen_drop": gen_drop.get_state(), "step": step, "args": vars(a), "tokenizer": tok_path}, ckpt + ".tmp")
            os.replace(ckpt + ".tmp", ckpt)
    log.close()
    if step < a.steps:
        print(f"stopped at step {step} (--stop-at); continue with --resume", flush=True)
        return 0
    el, ea = evaluate(model, hx, hy, a.batch)
    print("final held-out loss: " + fmt_exits(dict(enumerate(el))), flush=True)
    print("final held-out top-1: " + fmt_exits(dict(enumerate(ea))), flush=True)
    summary = {"args": vars(a), "data": info, "params": model.n_params(), "steps": step,
               "train_seconds": time.time() - t0, "heldout_loss": el, "heldout_acc": ea}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    export.save_hf(model, tok_path, os.path.join(a.out, "hf"))
    print(f"wrote {os.path.join(a.out, 'hf')}", flush=True)
    if a.gguf:
        export.save_gguf(model, tok_path, a.gguf, a.gguf_type, a.name)
        print(f"wrote {a.gguf} ({a.gguf_type})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
