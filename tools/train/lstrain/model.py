"""The Llama architecture in PyTorch, in Hugging Face's weight layout.

Same math as the engine (engine/src/forward.c): RMSNorm, rotary embeddings
rotating halves (HF layout; the GGUF export permutes Q/K rows to the engine's
adjacent-pair layout), grouped-query attention, SwiGLU. forward() can return
every layer's output so the early-exit loss and the per-layer report can send
each through the shared final norm and LM head, and can skip layers per sample
(LayerSkip's layer dropout).
"""
import dataclasses
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclasses.dataclass
class LlamaConfig:
    vocab_size: int = 2048
    hidden_size: int = 192
    num_hidden_layers: int = 12
    num_attention_heads: int = 3
    num_key_value_heads: int = 3
    intermediate_size: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = True
    bos_token_id: int = 0
    eos_token_id: int = 0

    @property
    def head_dim(self):
        return self.hidden_size // self.num_attention_heads

    def check(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not a multiple of the head count "
                             f"{self.num_attention_heads}: pick --dim and --heads so that dim/heads is whole")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"--heads {self.num_attention_heads} is not a multiple of --kv-heads "
                             f"{self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for rotary embeddings")

    def to_hf(self):
        """config.json contents, as transformers' LlamaConfig writes them."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False,
            "mlp_bias": False,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "torch_dtype": "float32",
        }

    @classmethod
    def from_hf(cls, path):
        with open(path) as f:
            j = json.load(f)
        if j.get("model_type", "llama") != "llama":
            raise ValueError(f"{path}: model_type '{j.get('model_type')}' is not supported (only 'llama')")
        if j.get("rope_scaling"):
            raise ValueError(f"{path}: rope_scaling is not supported by the trainer (remove it or train a model without it)")
        cfg = cls(
            vocab_size=j["vocab_size"], hidden_size=j["hidden_size"],
            num_hidden_layers=j["num_hidden_layers"], num_attention_heads=j["num_attention_heads"],
            num_key_value_heads=j.get("num_key_value_heads", j["num_attention_heads"]),
            intermediate_size=j["intermediate_size"], rms_norm_eps=j.get("rms_norm_eps", 1e-6),
            rope_theta=j.get("rope_theta", 10000.0),
            max_position_embeddings=j.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(j.get("tie_word_embeddings", False)),
            bos_token_id=j.get("bos_token_id") or 0, eos_token_id=_first(j.get("eos_token_id"), 0))
        if "head_dim" in j and j["head_dim"] != cfg.head_dim:
            raise ValueError(f"{path}: head_dim {j['head_dim']} != hidden_size/num_attention_heads is not supported")
        cfg.check()
        return cfg


def _first(v, default):
    if isinstance(v, list):
        return v[0] if v else default
    return default if v is None else v


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, n, device=None):
    """cos/sin (n, head_dim) for positions 0..n-1, HF's rotate-halves layout."""
    d = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64, device=device) / d))
    t = torch.arange(n, dtype=torch.float64, device=device)
    f = torch.outer(t, inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(cfg.num_attention_heads * hd, cfg.hidden_size, bias=False)
        self.kv_fp16 = False  # round K/V to fp16 like the engine's KV cache (tests)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        c = self.cfg
        hd = c.head_dim
        q = self.q_proj(x).view(b, t, c.num_attention_heads, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, c.num_key_value_heads, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, c.num_key_value_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.kv_fp16:
            k, v = k.half().float(), v.half().float()
        rep = c.num_attention_heads // c.num_key_value_heads
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        # torch 1.13's fused attention has no GQA and is only a little faster on CPU
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c.num_attention_heads * hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    """The 'model.' prefix of HF names: embedding, layers, final norm."""

    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        self.model = Inner(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_weights(self, generator):
        """GPT-2/Llama style init: N(0, 0.02), output projections scaled by
        1/sqrt(2L) so the residual stream does not grow with depth."""
        std = 0.02
        resid_std = std / math.sqrt(2 * self.cfg.num_hidden_layers)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                nn.init.ones_(p)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                with torch.no_grad():
                    p.normal_(0.0, resid_std, generator=generator)
            else:
                with torch.no_grad():
                    p.normal_(0.0, std, generator=generator)

    def exit_head(self, h):
        """final norm + LM head on any layer's output (LayerSkip's shared exit)"""
        return self.lm_head(self.model.norm(h))

    def forward(self, ids, keep=None, return_hidden=False):
        """ids (B, T). keep: optional (L, B) bool; layer l runs on sample b only
        where keep[l, b] (layer dropout: a skipped layer is the identity).
        Returns the final logits, and with return_hidden the list of every
        layer's output (B, T, D) before the final norm."""
        b, t = ids.shape
        cos, sin = rope_tables(self.cfg, t, ids.device)
        x = self.model.embed_tokens(ids)
        hidden = []
        for i, layer in enumerate(self.model.layers):
            if keep is None:
                x = layer(x, cos, sin)
            else:
                k = keep[i]
                if bool(k.all()):
                    x = layer(x, cos, sin)
                elif bool(k.any()):
                    # run the layer only on the samples that keep it: skipped
                    # samples cost nothing, which is LayerSkip's training speedup
                    idx = k.nonzero().squeeze(1)
                    x = x.index_copy(0, idx, layer(x.index_select(0, idx), cos, sin))
            if return_hidden:
                hidden.append(x)
        logits = self.exit_head(x)
        return (logits, hidden) if return_hidden else logits

    def set_kv_fp16(self, on):
        """round K and V to fp16 as the engine's KV cache stores them, so a
        comparison with the engine measures the rest of the arithmetic"""
        for layer in self.model.layers:
            layer.self_attn.kv_fp16 = on

    def n_params(self):
        return sum(p.numel() for p in self.parameters())
