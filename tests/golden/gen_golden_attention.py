#!/usr/bin/python3
"""Generates tests/golden/golden_attention.h, the PyTorch reference values that
tests/test_attention.c compares libaimodel's attention, positional embedding
and linear kinds against.

Run from the repository root with Debian's interpreter (python3-torch 1.13
and numpy):

    /usr/bin/python3 tests/golden/gen_golden_attention.py [--check]

It follows gen_golden.py (whose helpers it imports): every input is rounded to
float32 first, the computation runs in float64, and only the results are
rounded to float32, so the error the C test measures is the library's own.
The output is deterministic. --check also prints to stderr how far a float32
PyTorch run lands from the stored values under the C test's metric (the
generator asserts that it stays within half of each tolerance).

Cases:
  a) nn.MultiheadAttention(E, H, bias, batch_first=True) as self-attention,
     mha(x, x, x, attn_mask, need_weights=False)[0], dropout 0: the output Y
     and the gradients of sum(Y * G) with respect to x and every parameter,
     for the cases of A_CASES (E 6 to 12, 1 to 4 heads, causal or not, with
     and without bias). The causal mask is the boolean upper triangle (True =
     not allowed), which PyTorch turns into -inf scores. Flat parameters in
     libaimodel's order, PyTorch's: in_proj_weight [3E, E], in_proj_bias
     [3E], out_proj.weight [E, E], out_proj.bias [E] (without bias only the
     two weights). Each case is also checked here against the formula
     softmax(Q_h K_h^T / sqrt(d) + mask) V_h written out by hand;
  p) GPT-2's positional embedding: Y = x + wpe[:T] with wpe [P, E], P > T:
     Y and the gradients of sum(Y * G) with respect to x and wpe (rows T..P-1
     get exactly zero);
  l) nn.Linear(E, U) on the last axis of (B, ..., E), with and without bias,
     followed by nothing or by GELU (exact erf): Y and the gradients of
     sum(Y * G) with respect to x, W and b;
  t) a pre-norm transformer block as a small model, batch T_B:
       ids (T) -> [0] Embedding(V, E) -> [1] + wpe[:T] (P rows)
       -> [2] LN1 -> [3] causal self-attention (H heads) -> [4] add(1, 3)
       -> [5] LN2 -> [6] Linear(E, F) + GELU -> [7] Linear(F, E) -> [8] add(4, 7)
       -> [9] LN_f -> [10] Linear(E, V, bias=False): logits (T, V) per sequence;
     loss: cross-entropy with a label per position, the mean over the B * T
     positions (F.cross_entropy on the flattened logits);
     the logits, the loss and every parameter gradient at the initial
     parameters, then 3 steps of torch.optim.AdamW(lr=1e-2, weight_decay=0.01,
     default betas and eps): every step's loss and the parameters after each
     step. The key third of in_proj_bias has an exactly zero gradient (a
     constant added to every key adds the same q.b_k to every score of a row,
     which the softmax ignores): float arithmetic leaves noise there (~1e-17
     in float64, ~1e-8 in float32), which Adam would turn into steps of
     +-lr. Before every optimizer step it is set to its exact value, 0, here
     and in the C test (which checks first that it is near zero).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import ADAM_BETAS, ADAM_EPS, DTYPE, Header, c_float, f32, q32, uniform  # noqa: E402

SEED = 20260601
OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_attention.h")

# a) cases: (name, E, H, causal, bias, B, T)
A_CASES = [
    ("e8h2", 8, 2, False, True, 2, 5),
    ("e8h2_causal", 8, 2, True, True, 3, 6),
    ("e6h3_causal", 6, 3, True, True, 2, 7),
    ("e12h4", 12, 4, False, True, 2, 4),
    ("e8h1", 8, 1, False, True, 2, 5),
    ("e8h2_nobias_causal", 8, 2, True, False, 2, 5),
]

# p) sizes
P_B, P_T, P_E, P_P = 2, 5, 4, 8

# l) cases: (name, sample shape, units, bias, activation name, torch function)
L_B, L_U = 2, 3
L_CASES = [
    ("bias", (4, 5), True, "AIM_ACT_IDENTITY", lambda z: z),
    ("nobias", (4, 5), False, "AIM_ACT_IDENTITY", lambda z: z),
    ("gelu", (2, 3, 5), True, "AIM_ACT_GELU", lambda z: F.gelu(z, approximate="none")),
]

# t) sizes
T_V, T_E, T_H, T_T, T_P, T_F, T_B = 11, 8, 2, 6, 8, 16, 3
T_STEPS, T_LR, T_WD = 3, f32(1e-2), f32(0.01)
LN_EPS = f32(1e-5)
T_IDS = [[1, 4, 4, 9, 2, 0],
         [10, 3, 5, 1, 1, 8],
         [6, 2, 9, 0, 3, 3]]  # 7 never appears
T_LABELS = [[4, 4, 9, 2, 0, 5],
            [3, 5, 1, 1, 8, 10],
            [2, 9, 0, 3, 3, 6]]

# The C test's metric: |got - ref| / max(|ref|, frac * max|ref|) per array.
# "attn" is an output that went through attention (its Y, the block's logits):
# three float32 products and a softmax deep, float32 PyTorch lands up to
# 8.2e-6 from the references under this metric (about one float32 rounding
# of the array's largest value), so it gets twice "forward"'s tolerance.
FLOOR_FRAC = {"forward": 1e-2, "attn": 1e-2, "grad": 1e-2, "traj": 1e-2, "update": 0.1}
TOLERANCE = {"forward": 1e-5, "attn": 2e-5, "grad": 1e-4, "traj": 1e-4, "update": 1e-3}
# Every nonzero entry of a gradient that Adam sees is at least this fraction
# of its tensor's largest, so no first Adam step (~lr * sign(g)) is decided
# by float rounding.
GRAD_MARGIN = 1e-4


class AttentionHeader(Header):
    def text(self):
        head = (
            "/* Generated by tests/golden/gen_golden_attention.py with torch %s; do not edit.\n"
            " * Regenerate: /usr/bin/python3 tests/golden/gen_golden_attention.py\n"
            " * Inputs are float32 values; references were computed in float64 by\n"
            " * PyTorch and rounded to float32. */\n"
            "#ifndef AIM_GOLDEN_ATTENTION_H\n"
            "#define AIM_GOLDEN_ATTENTION_H\n\n"
            "#include <stdint.h>\n\n" % torch.__version__
        )
        return head + "".join(self.parts) + "\n#endif /* AIM_GOLDEN_ATTENTION_H */\n"


def rel_err(got, ref, kind):
    got = np.asarray(got, dtype=np.float64).reshape(-1)
    ref = np.float32(np.asarray(ref, dtype=np.float64).reshape(-1)).astype(np.float64)
    floor = FLOOR_FRAC[kind] * np.abs(ref).max()
    return (np.abs(got - ref) / np.maximum(np.abs(ref), floor)).max()


CHECKS = []  # (name, kind, float32 torch error)


def as_np(t):
    return t.detach().numpy() if torch.is_tensor(t) else np.asarray(t)


def check(name, kind, got32, ref):
    err = rel_err(as_np(got32), as_np(ref), kind)
    assert err * 2 <= TOLERANCE[kind], (name, kind, err)
    CHECKS.append((name, kind, err))


def flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


# ---------------------------------------------------------------- a) attention


def causal_mask(T):
    return torch.triu(torch.ones((T, T), dtype=torch.bool), diagonal=1)


def mha_case(x, params, g, E, H, causal, bias, dtype):
    """nn.MultiheadAttention's forward and backward; params in libaimodel's order."""
    mha = torch.nn.MultiheadAttention(E, H, dropout=0.0, bias=bias, batch_first=True).to(dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(params[0])
        mha.out_proj.weight.copy_(params[2 if bias else 1])
        if bias:
            mha.in_proj_bias.copy_(params[1])
            mha.out_proj.bias.copy_(params[3])
    x = x.to(dtype).clone().requires_grad_(True)
    mask = causal_mask(x.shape[1]) if causal else None
    y, w = mha(x, x, x, attn_mask=mask, need_weights=False)
    assert w is None
    (y * g.to(dtype)).sum().backward()
    if bias:
        grads = [mha.in_proj_weight.grad, mha.in_proj_bias.grad, mha.out_proj.weight.grad, mha.out_proj.bias.grad]
    else:
        grads = [mha.in_proj_weight.grad, mha.out_proj.weight.grad]
    return y.detach(), x.grad, flat(grads)


def mha_by_hand(x, params, E, H, causal, bias):
    """The documented formula, independent of nn.MultiheadAttention."""
    w_in, b_in, w_o, b_o = (params[0], params[1], params[2], params[3]) if bias else \
        (params[0], torch.zeros(3 * E, dtype=DTYPE), params[1], torch.zeros(E, dtype=DTYPE))
    qkv = x @ w_in.T + b_in
    d = E // H
    T = x.shape[1]
    outs = []
    for h in range(H):
        q = qkv[..., h * d:(h + 1) * d]
        k = qkv[..., E + h * d:E + (h + 1) * d]
        v = qkv[..., 2 * E + h * d:2 * E + (h + 1) * d]
        s = q @ k.transpose(-1, -2) / math.sqrt(d)
        if causal:
            s = s.masked_fill(causal_mask(T), float("-inf"))
        outs.append(torch.softmax(s, dim=-1) @ v)
    return torch.cat(outs, dim=-1) @ w_o.T + b_o


def attention_params(E, bias):
    lim = 0.8  # scores of order 1: peaked softmax rows, not uniform ones
    p = [uniform((3 * E, E), -lim, lim)]
    if bias:
        p.append(uniform((3 * E,), -0.3, 0.3))
    p.append(uniform((E, E), -1.0 / math.sqrt(E), 1.0 / math.sqrt(E)))
    if bias:
        p.append(uniform((E,), -0.3, 0.3))
    return p


def gen_attention(h):
    h.comment("a) Self-attention: Y = nn.MultiheadAttention(E, H, dropout=0, bias, batch_first=True)\n"
              "(x, x, x, attn_mask, need_weights=False)[0]; the causal attn_mask is\n"
              "torch.triu(ones(T, T, bool), 1). dX and dparams are the gradients of sum(Y * G).\n"
              "x, G, Y, dX are (B, T, E); params and dparams flat in libaimodel's order: in_proj_weight\n"
              "[3E, E], in_proj_bias [3E], out_proj.weight [E, E], out_proj.bias [E] (no biases\n"
              "when BIAS is 0).")
    for name, E, H, causal, bias, B, T in A_CASES:
        x = uniform((B, T, E), -1.5, 1.5)
        params = attention_params(E, bias)
        g = uniform((B, T, E), -1.0, 1.0)
        y, dx, dp = mha_case(x, params, g, E, H, causal, bias, DTYPE)
        y32, dx32, dp32 = mha_case(x, params, g, E, H, causal, bias, torch.float32)
        hand = mha_by_hand(x, params, E, H, causal, bias)
        assert torch.allclose(hand, y, rtol=1e-12, atol=1e-12), name
        up = "GOLDEN_ATT_%s_" % name.upper()
        h.define(up + "E", E)
        h.define(up + "H", H)
        h.define(up + "CAUSAL", int(causal))
        h.define(up + "BIAS", int(bias))
        h.define(up + "B", B)
        h.define(up + "T", T)
        p = "golden_att_%s" % name
        h.floats(p + "_x", x)
        h.floats(p + "_params", flat(params))
        h.floats(p + "_g", g)
        h.floats(p + "_y", y)
        h.floats(p + "_dx", dx)
        h.floats(p + "_dparams", dp)
        check("attention %s y" % name, "attn", y32, y)
        check("attention %s dx" % name, "grad", dx32, dx)
        # Tensor by tensor, as the C test compares them.
        off = 0
        sizes = [3 * E * E, 3 * E, E * E, E] if bias else [3 * E * E, E * E]
        for part, n in zip(("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias") if bias else
                           ("in_proj_weight", "out_proj.weight"), sizes):
            check("attention %s d%s" % (name, part), "grad", dp32[off:off + n], dp[off:off + n])
            off += n
        assert off == dp.numel()
    h.blank()


# ---------------------------------------------------------------- p) positional embedding


def pos_case(x, wpe, g, dtype):
    x = x.to(dtype).clone().requires_grad_(True)
    wpe = wpe.to(dtype).clone().requires_grad_(True)
    y = x + F.embedding(torch.arange(x.shape[1]), wpe)
    (y * g.to(dtype)).sum().backward()
    return y.detach(), x.grad, wpe.grad


def gen_pos(h):
    x = uniform((P_B, P_T, P_E), -1.0, 1.0)
    wpe = uniform((P_P, P_E), -1.0, 1.0)
    g = uniform((P_B, P_T, P_E), -1.0, 1.0)
    y, dx, dw = pos_case(x, wpe, g, DTYPE)
    y32, dx32, dw32 = pos_case(x, wpe, g, torch.float32)
    assert (dw[P_T:] == 0).all()
    h.comment("p) Positional embedding (GPT-2's wpe): Y = x + F.embedding(arange(T), wpe), x (B, T, E),\n"
              "wpe [P, E] with P > T; dX and dwpe are the gradients of sum(Y * G) (rows T.. of dwpe 0).")
    h.define("GOLDEN_POS_B", P_B)
    h.define("GOLDEN_POS_T", P_T)
    h.define("GOLDEN_POS_E", P_E)
    h.define("GOLDEN_POS_P", P_P)
    for part, v in (("x", x), ("wpe", wpe), ("g", g), ("y", y), ("dx", dx), ("dwpe", dw)):
        h.floats("golden_pos_" + part, v)
    check("pos y", "forward", y32, y)
    check("pos dx", "grad", dx32, dx)
    check("pos dwpe", "grad", dw32, dw)
    h.blank()


# ---------------------------------------------------------------- l) linear


def linear_case(x, w, b, g, fn, dtype):
    x = x.to(dtype).clone().requires_grad_(True)
    w = w.to(dtype).clone().requires_grad_(True)
    if b is not None:
        b = b.to(dtype).clone().requires_grad_(True)
    y = fn(F.linear(x, w, b))
    (y * g.to(dtype)).sum().backward()
    return y.detach(), x.grad, w.grad, (b.grad if b is not None else None)


def gen_linear(h):
    h.comment("l) Linear on the last axis: Y = act(F.linear(x, W, b)), x (B, sample..., E), W [U, E],\n"
              "b [U] (none for nobias), act identity or GELU (exact erf); dX, dW, db are the gradients\n"
              "of sum(Y * G).")
    h.define("GOLDEN_LIN_B", L_B)
    h.define("GOLDEN_LIN_U", L_U)
    for name, shape, bias, act, fn in L_CASES:
        E = shape[-1]
        lim = 1.0 / math.sqrt(E)
        x = uniform((L_B,) + shape, -1.5, 1.5)
        w = uniform((L_U, E), -lim, lim)
        b = uniform((L_U,), -lim, lim) if bias else None
        g = uniform((L_B,) + shape[:-1] + (L_U,), -1.0, 1.0)
        ref = linear_case(x, w, b, g, fn, DTYPE)
        got = linear_case(x, w, b, g, fn, torch.float32)
        p = "golden_lin_%s" % name
        h.define("GOLDEN_LIN_%s_ACT" % name.upper(), act)
        h.floats(p + "_x", x)
        h.floats(p + "_w", w)
        if bias:
            h.floats(p + "_b", b)
        h.floats(p + "_g", g)
        for part, r, o in zip(("y", "dx", "dw", "db"), ref, got):
            if r is None:
                continue
            h.floats("%s_%s" % (p, part), r)
            check("linear %s %s" % (name, part), "forward" if part == "y" else "grad", o, r)
    h.blank()


# ---------------------------------------------------------------- t) transformer block

T_TENSORS = [  # name, shape
    ("embedding weight", (T_V, T_E)),
    ("wpe", (T_P, T_E)),
    ("ln1 weight", (T_E,)),
    ("ln1 bias", (T_E,)),
    ("in_proj_weight", (3 * T_E, T_E)),
    ("in_proj_bias", (3 * T_E,)),
    ("out_proj.weight", (T_E, T_E)),
    ("out_proj.bias", (T_E,)),
    ("ln2 weight", (T_E,)),
    ("ln2 bias", (T_E,)),
    ("fc1 weight", (T_F, T_E)),
    ("fc1 bias", (T_F,)),
    ("fc2 weight", (T_E, T_F)),
    ("fc2 bias", (T_E,)),
    ("ln_f weight", (T_E,)),
    ("ln_f bias", (T_E,)),
    ("head weight", (T_V, T_E)),
]
IN_PROJ_BIAS = 5  # index of in_proj_bias in T_TENSORS


def block_forward(p, ids, dtype):
    (w_emb, wpe, g1, b1, w_in, b_in, w_o, b_o, g2, b2, w1, c1, w2, c2, gf, bf, w_head) = p
    T = ids.shape[1]
    x = F.embedding(ids, w_emb) + wpe[:T]
    n1 = F.layer_norm(x, (T_E,), g1, b1, eps=LN_EPS).transpose(0, 1)  # (T, B, E), as nn.MultiheadAttention passes it
    a, _ = F.multi_head_attention_forward(n1, n1, n1, T_E, T_H, w_in, b_in, None, None, False, 0.0, w_o, b_o,
                                          training=True, need_weights=False, attn_mask=causal_mask(T))
    x = x + a.transpose(0, 1)
    m = F.linear(F.gelu(F.linear(F.layer_norm(x, (T_E,), g2, b2, eps=LN_EPS), w1, c1), approximate="none"), w2, c2)
    x = x + m
    return F.linear(F.layer_norm(x, (T_E,), gf, bf, eps=LN_EPS), w_head)


def run_block(init, dtype):
    p = [t.to(dtype).clone().requires_grad_(True) for t in init]
    ids = torch.tensor(T_IDS, dtype=torch.int64)
    labels = torch.tensor(T_LABELS, dtype=torch.int64)
    opt = torch.optim.AdamW(p, lr=T_LR, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=T_WD)
    logits0, grads0, bk_noise, losses, traj = None, None, 0.0, [], []
    for step in range(T_STEPS):
        opt.zero_grad()
        logits = block_forward(p, ids, dtype)
        loss = F.cross_entropy(logits.reshape(-1, T_V), labels.reshape(-1))
        loss.backward()
        bk = p[IN_PROJ_BIAS].grad[T_E:2 * T_E]
        bk_noise = max(bk_noise, bk.abs().max().item() / p[IN_PROJ_BIAS].grad.abs().max().item())
        bk.zero_()  # its exact value (see the docstring)
        if step == 0:
            logits0 = logits.detach().clone()
            grads0 = [t.grad.detach().clone() for t in p]
        losses.append(loss.item())
        opt.step()
        traj.append(flat([t.detach() for t in p]).clone())
    return logits0, grads0, losses, traj, bk_noise


def gen_block(h):
    init = [
        q32(torch.randn((T_V, T_E), dtype=DTYPE)),                  # nn.Embedding's N(0, 1)
        q32(0.5 * torch.randn((T_P, T_E), dtype=DTYPE)),            # larger than GPT-2's 0.02, so it matters
        uniform((T_E,), 0.8, 1.2), uniform((T_E,), -0.2, 0.2),
    ] + attention_params(T_E, True) + [
        uniform((T_E,), 0.8, 1.2), uniform((T_E,), -0.2, 0.2),
        uniform((T_F, T_E), -1 / math.sqrt(T_E), 1 / math.sqrt(T_E)),
        uniform((T_F,), -1 / math.sqrt(T_E), 1 / math.sqrt(T_E)),
        uniform((T_E, T_F), -1 / math.sqrt(T_F), 1 / math.sqrt(T_F)),
        uniform((T_E,), -1 / math.sqrt(T_F), 1 / math.sqrt(T_F)),
        uniform((T_E,), 0.8, 1.2), uniform((T_E,), -0.2, 0.2),
        uniform((T_V, T_E), -1.5 / math.sqrt(T_E), 1.5 / math.sqrt(T_E)),
    ]
    for t, (name, shape) in zip(init, T_TENSORS):
        assert tuple(t.shape) == shape, name
    logits, grads, losses, traj, noise = run_block(init, DTYPE)
    logits32, grads32, losses32, traj32, noise32 = run_block(init, torch.float32)
    assert noise < 1e-12 and noise32 < 1e-4, (noise, noise32)
    for (name, _), gr in zip(T_TENSORS, grads):
        a = gr.abs().reshape(-1)
        nz = a[a > 0]
        assert nz.min() >= GRAD_MARGIN * a.max(), (name, nz.min().item(), a.max().item())
    # Exactly zero: the unused id 7, the positions T.., the key bias (set above).
    assert (grads[0][7] == 0).all() and (grads[1][T_T:] == 0).all()
    flat0 = flat(init)
    h.comment("t) A pre-norm transformer block: ids (T) -> [0] Embedding(V, E) -> [1] + wpe[:T]\n"
              "(wpe [P, E]) -> [2] LN1 -> [3] causal MultiheadAttention(E, H) -> [4] add(1, 3) -> [5] LN2\n"
              "-> [6] Linear(E, F) + GELU -> [7] Linear(F, E) -> [8] add(4, 7) -> [9] LN_f\n"
              "-> [10] Linear(E, V, bias=False): logits (T, V); LayerNorm eps GOLDEN_T_LN_EPS.\n"
              "Loss: F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)), a label per position,\n"
              "batch GOLDEN_T_B. GOLDEN_T_STEPS steps of torch.optim.AdamW(lr=GOLDEN_T_LR,\n"
              "weight_decay=GOLDEN_T_WD), default betas and eps. Before each step the key third of\n"
              "in_proj_bias's gradient (exactly 0 in exact arithmetic) is set to 0.\n"
              "Flat parameters in libaimodel's order: embedding [V, E], wpe [P, E], LN1 weight, bias [E],\n"
              "in_proj_weight [3E, E], in_proj_bias [3E], out_proj.weight [E, E], out_proj.bias [E],\n"
              "LN2 weight, bias [E], fc1 W [F, E], b [F], fc2 W [E, F], b [E], LN_f weight, bias [E],\n"
              "head W [V, E]. golden_t_grad: every gradient at the initial parameters (the key bias\n"
              "third zeroed); golden_t_traj: the parameters after each step.")
    for k, v in (("V", T_V), ("E", T_E), ("H", T_H), ("T", T_T), ("P", T_P), ("F", T_F), ("B", T_B),
                 ("STEPS", T_STEPS)):
        h.define("GOLDEN_T_" + k, v)
    h.define("GOLDEN_T_LR", c_float(T_LR))
    h.define("GOLDEN_T_WD", c_float(T_WD))
    h.define("GOLDEN_T_LN_EPS", c_float(LN_EPS))
    h.define("GOLDEN_T_PARAMS", flat0.numel())
    h.ints("golden_t_ids", T_IDS)
    h.ints("golden_t_labels", T_LABELS)
    h.floats("golden_t_params0", flat0)
    h.floats("golden_t_logits", logits)
    h.floats("golden_t_grad", flat(grads))
    h.floats("golden_t_losses", losses)
    h.floats("golden_t_traj", torch.stack(traj))
    check("block logits", "attn", logits32, logits)
    for (name, _), g32, g64 in zip(T_TENSORS, grads32, grads):
        check("block d%s" % name, "grad", g32, g64)
    check("block losses", "forward", np.array(losses32), np.array(losses))
    for s in range(T_STEPS):
        off = 0
        for name, shape in T_TENSORS:
            n = int(np.prod(shape))
            check("block step %d %s" % (s + 1, name), "traj", traj32[s][off:off + n], traj[s][off:off + n])
            off += n
    off = 0
    for name, shape in T_TENSORS:
        n = int(np.prod(shape))
        d32 = traj32[-1][off:off + n] - flat0[off:off + n]
        d64 = traj[-1][off:off + n] - flat0[off:off + n]
        check("block update %s" % name, "update", d32, d64)
        off += n
    h.blank()


def main():
    torch.manual_seed(SEED)
    h = AttentionHeader()
    gen_attention(h)
    gen_pos(h)
    gen_linear(h)
    gen_block(h)
    with open(OUT_PATH, "w") as f:
        f.write(h.text())
    print("wrote %s (%d values)" % (OUT_PATH, h.total))
    if "--check" in sys.argv[1:]:
        for name, kind, err in CHECKS:
            print("%-40s %-8s float32 torch %.2e (tolerance %.0e)" % (name, kind, err, TOLERANCE[kind]),
                  file=sys.stderr)


if __name__ == "__main__":
    main()
