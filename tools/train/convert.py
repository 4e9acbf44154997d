#!/usr/bin/env python3
"""convert.py: write a trained model as a Hugging Face directory and/or GGUF.

Input: a training checkpoint (OUT/ckpt.pt of train.py), a Hugging Face
directory, or a GGUF file written by this tool. Examples:
  convert.py --in run/ckpt.pt --hf run/hf --gguf run/model-f16.gguf --gguf-type f16
  convert.py --in run/hf --gguf model-f32.gguf --gguf-type f32
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from lstrain import export  # noqa: E402
from lstrain.model import LlamaConfig, LlamaForCausalLM  # noqa: E402


def load_ckpt(path, tokenizer):
    st = torch.load(path)
    a = st["args"]
    tok = tokenizer or st.get("tokenizer")
    if not tok or not os.path.isfile(tok):
        raise SystemExit(f"error: {path}: its tokenizer {tok!r} is gone; pass --tokenizer PATH/tokenizer.json")
    sd = st["model"]
    emb = sd["model.embed_tokens.weight"]
    if a.get("init"):
        cfg = LlamaConfig.from_hf(os.path.join(a["init"], "config.json"))
    else:
        from tokenizers import Tokenizer
        eot = Tokenizer.from_file(tok).token_to_id("<|endoftext|>")
        cfg = LlamaConfig(vocab_size=emb.shape[0], hidden_size=emb.shape[1], num_hidden_layers=a["layers"],
                          num_attention_heads=a["heads"], num_key_value_heads=a["kv_heads"], intermediate_size=a["ffn"],
                          rms_norm_eps=a["norm_eps"], rope_theta=a["rope_theta"], max_position_embeddings=a["ctx"],
                          tie_word_embeddings=True, bos_token_id=eot, eos_token_id=eot)
    m = LlamaForCausalLM(cfg)
    m.load_state_dict(sd)
    m.eval()
    return m, tok


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--in", dest="inp", required=True, help="ckpt.pt, HF directory or .gguf")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the checkpoint's / the HF directory's)")
    p.add_argument("--hf", help="write a Hugging Face directory here")
    p.add_argument("--gguf", help="write a GGUF file here")
    p.add_argument("--gguf-type", choices=export.GGUF_TYPES, default="f16")
    p.add_argument("--name", default="lscode", help="general.name in the GGUF")
    a = p.parse_args()
    if not a.hf and not a.gguf:
        p.error("nothing to write: give --hf DIR and/or --gguf FILE")
    if a.inp.endswith(".pt"):
        model, tok = load_ckpt(a.inp, a.tokenizer)
    elif os.path.isdir(a.inp):
        model, tok = export.load_hf(a.inp)
        tok = a.tokenizer or tok
    else:
        model = export.load_any(a.inp)
        tok = a.tokenizer
        if not tok:
            p.error(f"--in {a.inp} is a GGUF file: pass --tokenizer tokenizer.json to write its vocabulary")
    if a.hf:
        export.save_hf(model, tok, a.hf)
        print(f"wrote {a.hf}")
    if a.gguf:
        export.save_gguf(model, tok, a.gguf, a.gguf_type, a.name)
        print(f"wrote {a.gguf} ({a.gguf_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
