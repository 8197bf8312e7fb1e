#!/usr/bin/python3
"""Generates tests/golden/golden_rmsprop.h, the PyTorch reference values that
tests/test_rmsprop.c compares libaimodel's RMSprop against.

Run from the repository root with Debian's interpreter (it has torch 1.13 and
numpy):

    /usr/bin/python3 tests/golden/gen_golden_rmsprop.py [--check]

It follows gen_golden.py (whose helpers it imports): every input and every
hyper-parameter is rounded to float32 first, torch.optim.RMSprop runs in
float64, and only the results are rounded to float32, so the error the C test
measures is the library's own. The output is deterministic. --check also
prints to stderr how far float32 PyTorch runs land from the stored values
under test_rmsprop.c's metrics.

Cases:
  a) torch.optim.RMSprop on OPT_N parameters for OPT_STEPS steps of a fixed
     gradient sequence, once per variant of OPT_CASES (plain, alpha and eps
     changed, centered, momentum, weight decay, all of centered + momentum +
     weight decay). Before step t, p.grad = golden_rms_grads[t] and the
     learning rate is golden_rms_<case>_lr[t]; golden_rms_<case>_traj[t] is
     the parameter vector after step t and golden_rms_<case>_delta[t] its
     change in that step (computed in float64, then rounded).
     golden_rms_<case>_cfg holds {alpha, eps, momentum, centered,
     weight_decay}. One parameter's gradients are ~1e-3 while eps is 1e-3 in
     two variants, so that eps placement (sqrt(v) + eps, outside the root)
     matters; another's ~2e-6 where eps is 1e-8.
  b) a 6 -> Linear 8 tanh -> Linear 3 model, nn.CrossEntropyLoss on class
     indices, MLP_STEPS steps of RMSprop(lr=1e-3, alpha=0.95, eps=1e-6,
     momentum=0.9, centered=True, weight_decay=0.01): the loss of each step
     and the final flat parameters (per layer W [out, in] then b).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_golden import DTYPE, Header, c_float, f32, q32, uniform  # noqa: E402

SEED = 20260414
OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_rmsprop.h")

OPT_N, OPT_STEPS = 12, 12
# name, alpha, eps, momentum, centered, weight_decay, lr schedule
OPT_CASES = [
    ("plain", 0.99, 1e-8, 0.0, False, 0.0, "const 0.01"),
    ("alpha_eps", 0.9, 1e-3, 0.0, False, 0.0, "varying"),
    ("centered", 0.99, 1e-8, 0.0, True, 0.0, "const 0.01"),
    ("momentum", 0.99, 1e-8, 0.9, False, 0.0, "const 0.005"),
    ("weight_decay", 0.99, 1e-8, 0.0, False, 0.1, "const 0.01"),
    ("centered_momentum_wd", 0.95, 1e-3, 0.5, True, 0.05, "varying"),
]

MLP_B, MLP_SIZES, MLP_STEPS = 5, (6, 8, 3), 4
MLP_LR, MLP_ALPHA, MLP_EPS, MLP_MOMENTUM, MLP_WD = 1e-3, 0.95, 1e-6, 0.9, 0.01

# The C test's metrics (see test_rmsprop.c): relative error with a floor of
# FLOOR_FRAC times the array's largest |reference|.
FLOOR_FRAC = {"traj": 1e-2, "delta": 0.1, "forward": 1e-2}


def lr_schedule(spec):
    if spec == "varying":
        # Cosine decay from 0.02 to 0.002, with a bump, so that a library
        # ignoring the per-step learning rate cannot match.
        lrs = [0.002 + 0.018 * 0.5 * (1 + math.cos(math.pi * t / OPT_STEPS)) for t in range(OPT_STEPS)]
        lrs[6] = 0.03
        return [f32(v) for v in lrs]
    return [f32(float(spec.split()[1]))] * OPT_STEPS


def make_rmsprop(params, alpha, eps, momentum, centered, wd, lr):
    return torch.optim.RMSprop(params, lr=lr, alpha=f32(alpha), eps=f32(eps), momentum=f32(momentum),
                               centered=centered, weight_decay=f32(wd))


def run_trajectory(case, p0, grads, lrs, dtype):
    _, alpha, eps, momentum, centered, wd, _ = case
    p = p0.to(dtype).clone().requires_grad_(True)
    opt = make_rmsprop([p], alpha, eps, momentum, centered, wd, lrs[0])
    traj = []
    for t in range(OPT_STEPS):
        for group in opt.param_groups:
            group["lr"] = lrs[t]
        p.grad = grads[t].to(dtype).clone()
        opt.step()
        traj.append(p.detach().clone())
    traj = torch.stack(traj)
    delta = traj - torch.cat([p0.to(dtype).reshape(1, -1), traj[:-1]])
    return traj, delta


CHECKS = []


def check(name, got32, ref, kind):
    got32 = got32.detach().numpy() if torch.is_tensor(got32) else got32
    ref = ref.detach().numpy() if torch.is_tensor(ref) else ref
    CHECKS.append((name, np.asarray(got32, dtype=np.float64).reshape(-1),
                   np.asarray(np.float32(ref), dtype=np.float64).reshape(-1), kind))


def gen_trajectories(h):
    p0 = uniform((OPT_N,), -1.0, 1.0)
    grads = uniform((OPT_STEPS, OPT_N), -1.0, 1.0)
    grads[3] *= 4.0                  # a large step
    grads[:, OPT_N - 2] *= 1e-3      # comparable with eps = 1e-3
    grads[:, OPT_N - 1] *= 2e-6      # comparable with sqrt(v) at eps = 1e-8
    grads[7:, 0] = q32(torch.full((OPT_STEPS - 7,), 0.5, dtype=DTYPE))  # a constant gradient (centered: v - g_avg^2 small)
    grads = q32(grads)
    h.comment("a) torch.optim.RMSprop, %d steps on %d parameters from golden_rms_p0. Before step t,\n"
              "p.grad = golden_rms_grads[t] and lr = golden_rms_<case>_lr[t]; golden_rms_<case>_traj[t]\n"
              "holds the parameters after step t, golden_rms_<case>_delta[t] their change in step t.\n"
              "golden_rms_<case>_cfg = {alpha, eps, momentum, centered, weight_decay}, float32 values."
              % (OPT_STEPS, OPT_N))
    h.define("GOLDEN_RMS_PARAMS", OPT_N)
    h.define("GOLDEN_RMS_STEPS", OPT_STEPS)
    h.floats("golden_rms_p0", p0)
    h.floats("golden_rms_grads", grads)
    for case in OPT_CASES:
        name, alpha, eps, momentum, centered, wd, sched = case
        lrs = lr_schedule(sched)
        traj, delta = run_trajectory(case, p0, grads, lrs, DTYPE)
        traj32, delta32 = run_trajectory(case, p0, grads, lrs, torch.float32)
        h.comment("%s: RMSprop(lr, alpha=%g, eps=%g, momentum=%g, centered=%s, weight_decay=%g), lr %s"
                  % (name, alpha, eps, momentum, centered, wd, sched))
        h.floats("golden_rms_%s_cfg" % name, [f32(alpha), f32(eps), f32(momentum), 1.0 if centered else 0.0, f32(wd)])
        h.floats("golden_rms_%s_lr" % name, lrs)
        h.floats("golden_rms_%s_traj" % name, traj)
        h.floats("golden_rms_%s_delta" % name, delta)
        check("%s traj" % name, traj32, traj, "traj")
        check("%s delta" % name, delta32, delta, "delta")
    h.blank()


def build_mlp(dtype):
    return [torch.nn.Linear(MLP_SIZES[i], MLP_SIZES[i + 1]).to(dtype) for i in range(len(MLP_SIZES) - 1)]


def flat_params(layers):
    return torch.cat([t.detach().reshape(-1) for l in layers for t in (l.weight, l.bias)])


def set_flat_params(layers, flat):
    i = 0
    with torch.no_grad():
        for l in layers:
            for t in (l.weight, l.bias):
                n = t.numel()
                t.copy_(flat[i:i + n].reshape(t.shape))
                i += n


def run_mlp(init, x, labels, dtype):
    layers = build_mlp(dtype)
    set_flat_params(layers, init.to(dtype))
    params = [t for l in layers for t in (l.weight, l.bias)]
    opt = make_rmsprop(params, MLP_ALPHA, MLP_EPS, MLP_MOMENTUM, True, MLP_WD, f32(MLP_LR))
    losses = []
    for _ in range(MLP_STEPS):
        opt.zero_grad()
        logits = layers[1](torch.tanh(layers[0](x.to(dtype))))
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        # RMSprop's first steps move each parameter by about lr / sqrt(1 -
        # alpha) times the sign of its gradient: keep every gradient clear of
        # zero, where rounding would decide the sign.
        for t in params:
            assert t.grad.abs().min().item() > 1e-5, t.grad.abs().min()
        losses.append(loss.detach().item())
        opt.step()
    return torch.tensor(losses, dtype=DTYPE), flat_params(layers)


def gen_mlp(h):
    init = q32(flat_params(build_mlp(DTYPE)))  # nn.Linear's default init
    x = uniform((MLP_B, MLP_SIZES[0]), -1.0, 1.0)
    labels = torch.tensor([0, 2, 1, 2, 0], dtype=torch.int64)
    ref_losses, ref_final = run_mlp(init, x, labels, DTYPE)
    got_losses, got_final = run_mlp(init, x, labels, torch.float32)
    count = sum((MLP_SIZES[i] + 1) * MLP_SIZES[i + 1] for i in range(len(MLP_SIZES) - 1))
    h.comment("b) MLP %d -> Linear %d tanh -> Linear %d, nn.CrossEntropyLoss with class indices,\n"
              "batch %d, %d steps of torch.optim.RMSprop(lr=%g, alpha=%g, eps=%g, momentum=%g,\n"
              "centered=True, weight_decay=%g). Flat parameters: per layer W [out, in] then b.\n"
              "golden_rms_mlp_losses[t] is the loss of step t's forward (before its update)."
              % (MLP_SIZES + (MLP_B, MLP_STEPS, MLP_LR, MLP_ALPHA, MLP_EPS, MLP_MOMENTUM, MLP_WD)))
    h.define("GOLDEN_RMS_MLP_BATCH", MLP_B)
    h.define("GOLDEN_RMS_MLP_IN", MLP_SIZES[0])
    h.define("GOLDEN_RMS_MLP_HIDDEN", MLP_SIZES[1])
    h.define("GOLDEN_RMS_MLP_OUT", MLP_SIZES[2])
    h.define("GOLDEN_RMS_MLP_STEPS", MLP_STEPS)
    h.define("GOLDEN_RMS_MLP_PARAMS", count)
    h.define("GOLDEN_RMS_MLP_LR", c_float(MLP_LR))
    h.define("GOLDEN_RMS_MLP_ALPHA", c_float(MLP_ALPHA))
    h.define("GOLDEN_RMS_MLP_EPS", c_float(MLP_EPS))
    h.define("GOLDEN_RMS_MLP_MOMENTUM", c_float(MLP_MOMENTUM))
    h.define("GOLDEN_RMS_MLP_WD", c_float(MLP_WD))
    h.floats("golden_rms_mlp_x", x)
    h.ints("golden_rms_mlp_labels", labels)
    h.floats("golden_rms_mlp_params0", init)
    h.floats("golden_rms_mlp_losses", ref_losses)
    h.floats("golden_rms_mlp_params_final", ref_final)
    check("mlp losses", got_losses, ref_losses, "forward")
    check("mlp final params", got_final, ref_final, "traj")
    check("mlp update (final - initial)", got_final - init.to(torch.float32),
          np.float32(ref_final.numpy()) - np.float32(init.numpy()), "delta")


class RmsHeader(Header):
    def text(self):
        head = (
            "/* Generated by tests/golden/gen_golden_rmsprop.py with torch %s; do not edit.\n"
            " * Regenerate: /usr/bin/python3 tests/golden/gen_golden_rmsprop.py\n"
            " * Inputs are float32 values; references were computed in float64 by\n"
            " * PyTorch and rounded to float32. */\n"
            "#ifndef AIM_GOLDEN_RMSPROP_H\n"
            "#define AIM_GOLDEN_RMSPROP_H\n\n"
            "#include <stdint.h>\n\n" % torch.__version__
        )
        return head + "".join(self.parts) + "\n#endif /* AIM_GOLDEN_RMSPROP_H */\n"


def report_checks():
    for name, got, ref, kind in CHECKS:
        floor = FLOOR_FRAC[kind] * np.abs(ref).max()
        err = (np.abs(got - ref) / np.maximum(np.abs(ref), floor)).max()
        sys.stderr.write("%-34s %-8s float32 torch max rel err %.3g\n" % (name, kind, err))


def main():
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    h = RmsHeader()
    gen_trajectories(h)
    gen_mlp(h)
    with open(OUT_PATH, "w", encoding="utf-8") as f:
        f.write(h.text())
    if "--check" in sys.argv[1:]:
        report_checks()
    sys.stderr.write("wrote %s (%d values)\n" % (OUT_PATH, h.total))


if __name__ == "__main__":
    main()
