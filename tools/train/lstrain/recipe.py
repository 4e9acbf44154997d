"""The LayerSkip training recipe (Elhoushi et al. 2024, section 4.1; docs/
LAYERSKIP.md 'Training recipe'): layer dropout rates, early-exit loss weights
and the curricula that choose which exits count at a step.

Layers are 0-based here: layer l's output is exit l (exit L-1 is the model's
normal output). Printed names are 1-based ("L1".."L12") to match E in the
engine, where E = number of layers run before the exit head.
"""
import math

import torch

DROPOUT_SCALES = ("exp", "linear", "uniform")
WEIGHT_SCALES = ("l", "sum_l", "one")
CURRICULA = ("none", "all", "rotational", "gradual")


def dropout_rates(n_layers, p_max, scale):
    """p_l = p_max * S(l), S rising from 0 at the first layer to 1 at the last.
    exp: S(l) = exp(l ln2 / (L-1)) - 1 (the paper's), linear: l/(L-1),
    uniform: 1 everywhere."""
    if not 0.0 <= p_max < 1.0:
        raise ValueError(f"--dropout-pmax {p_max}: must be in [0, 1)")
    if scale not in DROPOUT_SCALES:
        raise ValueError(f"--dropout-scale {scale}: unknown (one of {', '.join(DROPOUT_SCALES)})")
    n = max(n_layers - 1, 1)
    out = []
    for l in range(n_layers):
        if scale == "exp":
            s = math.exp(l * math.log(2) / n) - 1.0
        elif scale == "linear":
            s = l / n
        else:
            s = 1.0
        out.append(p_max * s)
    return out


def sample_keep(rates, batch, gen):
    """(L, B) bool: layer l runs on sample b (per-sample layer dropout)"""
    p = torch.tensor(rates, dtype=torch.float32).unsqueeze(1).expand(len(rates), batch)
    return torch.rand(len(rates), batch, generator=gen) >= p


def exit_scales(n_layers, weight_scale, e_scale):
    """unnormalised weight of each exit: grows with depth ('l': l+1,
    'sum_l': 1+2+..+(l+1), 'one': 1); non-final exits are multiplied by
    e_scale; the final exit keeps weight L (the paper's e~(L-1) = L-1 with
    1-based l)."""
    if weight_scale not in WEIGHT_SCALES:
        raise ValueError(f"--exit-weights {weight_scale}: unknown (one of {', '.join(WEIGHT_SCALES)})")
    if e_scale < 0:
        raise ValueError(f"--e-scale {e_scale}: must be >= 0")
    w = []
    for l in range(n_layers):
        k = l + 1
        base = {"l": float(k), "sum_l": k * (k + 1) / 2.0, "one": 1.0}[weight_scale]
        w.append(base if l == n_layers - 1 else e_scale * base)
    return w


def active_exits(curriculum, n_layers, step, total_steps, rot_r, grad_frac):
    """exits whose loss counts at this step (the final exit always does).
    all: every layer. rotational: layers l with l % R == step % R.
    gradual: exits switch on one at a time from the last layer downward over
    the first grad_frac of training, then all stay on."""
    last = n_layers - 1
    if curriculum == "none":
        return [last]
    if curriculum == "all":
        return list(range(n_layers))
    if curriculum == "rotational":
        if rot_r < 1:
            raise ValueError(f"--rotation {rot_r}: must be >= 1")
        return sorted({l for l in range(n_layers) if l % rot_r == step % rot_r} | {last})
    if curriculum == "gradual":
        span = max(1, int(total_steps * grad_frac))
        n_on = min(n_layers, 1 + (step * n_layers) // span)
        return list(range(n_layers - n_on, n_layers))
    raise ValueError(f"--early-exit {curriculum}: unknown (one of {', '.join(CURRICULA)})")


def exit_weights(active, scales):
    """normalised weights (sum 1) over the active exits: {layer: weight}"""
    tot = sum(scales[l] for l in active)
    if tot <= 0:
        return {active[-1]: 1.0}
    return {l: scales[l] / tot for l in active if scales[l] > 0}
