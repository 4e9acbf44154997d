"""Model files both ways: Hugging Face directories (config.json +
model.safetensors + tokenizer files) and GGUF (llama architecture, "gpt2"
byte-level BPE vocabulary), written with the safetensors and gguf libraries.

GGUF keeps llama.cpp's conventions, which the engine reads: Q and K rows are
permuted from HF's rotate-halves layout to adjacent pairs, norms stay F32,
a tied LM head has no output.weight.
"""
import json
import os

import numpy as np
import torch

from . import data
from .model import LlamaConfig, LlamaForCausalLM

GGUF_TYPES = ("f32", "f16")


def _state_np(model):
    """HF-named float32 numpy arrays (the tied lm_head left out)"""
    out = {}
    for k, v in model.state_dict().items():
        if k == "lm_head.weight" and model.cfg.tie_word_embeddings:
            continue
        out[k] = v.detach().to(torch.float32).contiguous().numpy()
    return out


def save_hf(model, tok_path, out_dir):
    from safetensors.numpy import save_file
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(model.cfg.to_hf(), f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": model.cfg.bos_token_id, "eos_token_id": model.cfg.eos_token_id}, f, indent=2)
    save_file(_state_np(model), os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    data.write_tokenizer_files(tok_path, out_dir, model.cfg.max_position_embeddings)


def load_hf(path):
    """HF directory -> (model in eval mode, tokenizer.json path)"""
    from safetensors.numpy import load_file
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{path}: no config.json (a Hugging Face model directory needs config.json, "
                                f"*.safetensors and tokenizer.json)")
    cfg = LlamaConfig.from_hf(cfg_path)
    tensors = {}
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors file")
    for f in files:
        tensors.update(load_file(os.path.join(path, f)))
    model = LlamaForCausalLM(cfg)
    sd = {k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise ValueError(f"{path}: tensors missing from the safetensors files: {', '.join(sorted(missing)[:5])}")
    model.load_state_dict(sd, strict=False)
    model.eval()
    return model, os.path.join(path, "tokenizer.json")


def _permute(w, n_head):
    """HF rotate-halves rows -> llama.cpp adjacent-pair rows (per head)"""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _gguf_names(cfg):
    """[(hf name, gguf name, permute heads or 0)]"""
    out = [("model.embed_tokens.weight", "token_embd.weight", 0), ("model.norm.weight", "output_norm.weight", 0)]
    if not cfg.tie_word_embeddings:
        out.append(("lm_head.weight", "output.weight", 0))
    for i in range(cfg.num_hidden_layers):
        for hf, gg in HF_TO_GGUF.items():
            perm = cfg.num_attention_heads if "q_proj" in hf else cfg.num_key_value_heads if "k_proj" in hf else 0
            out.append((f"model.layers.{i}.{hf}", f"blk.{i}.{gg}", perm))
    return out


def _tokenizer_vocab(tok_path):
    with open(tok_path) as f:
        j = json.load(f)
    m = j.get("model", {})
    if m.get("type") != "BPE":
        raise ValueError(f"{tok_path}: only BPE tokenizers can be written to GGUF")
    vocab = m["vocab"]
    added = {a["id"]: a for a in j.get("added_tokens", [])}
    n = max(list(vocab.values()) + list(added)) + 1
    tokens = [None] * n
    types = [1] * n  # 1 normal, 3 control (llama.cpp's token types)
    for t, i in vocab.items():
        tokens[i] = t
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = 3 if a.get("special") else 4
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
            types[i] = 5
    merges = [" ".join(x) if isinstance(x, list) else x for x in m.get("merges", [])]
    return tokens, types, merges


def save_gguf(model, tok_path, path, ftype="f16", name="lscode"):
    import gguf
    if ftype not in GGUF_TYPES:
        raise ValueError(f"--gguf-type {ftype}: unknown (one of {', '.join(GGUF_TYPES)})")
    cfg = model.cfg
    tokens, types, merges = _tokenizer_vocab(tok_path)
    if len(tokens) > cfg.vocab_size:
        raise ValueError(f"{tok_path}: {len(tokens)} tokens but the model's vocab_size is {cfg.vocab_size}")
    while len(tokens) < cfg.vocab_size:  # pad rows the tokenizer never emits
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(5)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_file_type(1 if ftype == "f16" else 0)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    sd = _state_np(model)
    for hf, gg, perm in _gguf_names(cfg):
        a = sd[hf]
        if perm:
            a = _permute(a, perm)
        if ftype == "f16" and a.ndim == 2:
            a = a.astype(np.float16)
        w.add_tensor(gg, np.ascontiguousarray(a))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def load_gguf(path):
    """GGUF (F32/F16 as written by save_gguf, or quantized: dequantized to F32) -> model in eval mode"""
    import gguf
    r = gguf.GGUFReader(path)

    def kv(key, default=None):
        f = r.fields.get(key)
        if f is None:
            if default is None:
                raise ValueError(f"{path}: key {key} is missing")
            return default
        return f.parts[f.data[0]][0].item()

    cfg = LlamaConfig(
        vocab_size=0, hidden_size=kv("llama.embedding_length"), num_hidden_layers=kv("llama.block_count"),
        num_attention_heads=kv("llama.attention.head_count"),
        num_key_value_heads=kv("llama.attention.head_count_kv", kv("llama.attention.head_count")),
        intermediate_size=kv("llama.feed_forward_length"),
        rms_norm_eps=kv("llama.attention.layer_norm_rms_epsilon"), rope_theta=kv("llama.rope.freq_base", 10000.0),
        max_position_embeddings=kv("llama.context_length", 2048),
        bos_token_id=kv("tokenizer.ggml.bos_token_id", 0), eos_token_id=kv("tokenizer.ggml.eos_token_id", 0))
    ts = {}
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape.tolist())]
        if t.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            ts[t.name] = np.asarray(t.data).astype(np.float32).reshape(shape)
        else:  # quantized (Q4_1, Q8_0, ...): dequantized to F32
            try:
                ts[t.name] = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
            except NotImplementedError:
                raise ValueError(f"{path}: tensor {t.name} is {t.tensor_type.name}, which gguf-py cannot dequantize")
    cfg.vocab_size = ts["token_embd.weight"].shape[0]
    cfg.tie_word_embeddings = "output.weight" not in ts
    model = LlamaForCausalLM(cfg)
    sd = {}
    for hf, gg, perm in _gguf_names(cfg):
        if gg not in ts:
            raise ValueError(f"{path}: tensor {gg} is missing")
        a = ts[gg]
        if perm:
            a = _unpermute(a, perm)
        sd[hf] = torch.from_numpy(np.ascontiguousarray(a))
    if cfg.tie_word_embeddings:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    model.load_state_dict(sd)
    model.eval()
    return model


def load_any(path):
    """HF directory or .gguf file -> model"""
    if os.path.isdir(path):
        return load_hf(path)[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file or directory (give a .gguf file or an HF model directory)")
    return load_gguf(path)
