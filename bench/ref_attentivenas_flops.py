#!/usr/bin/env python3
"""Reference MACs / params for AttentiveNAS-A0..A6 (pure Python, no torch).

Independent re-implementation of the counting convention used by the official
repo facebookresearch/AttentiveNAS (commit c4c16f1):
  * FLOPs: utils/flops_counter.py::count_net_flops_and_params -> profile(),
    forward hooks on leaf nn.Conv2d / nn.Linear of the *static* subnet returned
    by AttentiveNasDynamicModel.get_active_subnet(), input (1,3,res,res).
      conv   : Cin * (Cout*Hout*Wout) * k*k // groups   (no bias, no BN, no act)
      linear : in_features * out_features             (no bias)
    Only convs that actually run in forward are counted (hook-based).
    The analytic AttentiveNasDynamicModel.compute_active_subnet_flops() gives
    the identical number for these seven nets.
  * params: sum of numel() of all parameters of all leaf modules of the static
    subnet (BN gamma/beta, SE biases, classifier bias included; BN running
    stats are buffers, not counted).  NOTE: every block's ShortcutLayer owns a
    1x1 conv (Cin->Cout, no bias) even when it is an identity/avg-pool
    shortcut that is never executed; the profiler counts those weights too.
    We print both the profiler value and the "effective" value without them.
Published MFLOPs (README): 203, 279, 317, 357, 444, 491, 709.
"""

# ---------------------------------------------------------------------------
# Subnet configs (configs/eval_attentive_nas_models.yml, pareto_models)
# width: [first_conv, mb1..mb7, last_conv]; the other lists are per stage mb1..mb7
# ---------------------------------------------------------------------------
CONFIGS = {
    "A0": dict(resolution=192, width=[16, 16, 24, 32, 64, 112, 192, 216, 1792],
               kernel_size=[3, 3, 3, 3, 3, 3, 3], expand_ratio=[1, 4, 4, 4, 4, 6, 6],
               depth=[1, 3, 3, 3, 3, 3, 1]),
    "A1": dict(resolution=224, width=[16, 16, 24, 32, 64, 112, 192, 216, 1984],
               kernel_size=[3, 3, 3, 5, 3, 5, 3], expand_ratio=[1, 4, 4, 4, 4, 6, 6],
               depth=[1, 3, 3, 3, 3, 3, 1]),
    "A2": dict(resolution=224, width=[16, 16, 24, 32, 64, 112, 200, 224, 1984],
               kernel_size=[3, 3, 3, 3, 3, 5, 3], expand_ratio=[1, 4, 5, 4, 4, 6, 6],
               depth=[1, 3, 3, 3, 3, 4, 1]),
    "A3": dict(resolution=224, width=[16, 16, 24, 32, 64, 112, 208, 224, 1984],
               kernel_size=[3, 3, 3, 5, 3, 3, 3], expand_ratio=[1, 4, 4, 4, 4, 6, 6],
               depth=[2, 3, 3, 4, 3, 5, 1]),
    "A4": dict(resolution=256, width=[16, 16, 24, 32, 64, 112, 192, 216, 1984],
               kernel_size=[3, 3, 3, 5, 3, 5, 3], expand_ratio=[1, 4, 4, 5, 4, 6, 6],
               depth=[1, 3, 3, 4, 3, 5, 1]),
    "A5": dict(resolution=256, width=[16, 16, 24, 32, 72, 112, 192, 216, 1792],
               kernel_size=[3, 3, 3, 5, 3, 3, 3], expand_ratio=[1, 4, 5, 4, 4, 6, 6],
               depth=[1, 3, 3, 3, 4, 6, 1]),
    "A6": dict(resolution=288, width=[16, 16, 24, 32, 64, 112, 216, 224, 1984],
               kernel_size=[3, 3, 3, 3, 3, 5, 3], expand_ratio=[1, 4, 6, 5, 4, 6, 6],
               depth=[1, 3, 3, 4, 4, 6, 1]),
}
PUBLISHED_MFLOPS = {"A0": 203, "A1": 279, "A2": 317, "A3": 357, "A4": 444, "A5": 491, "A6": 709}

# Fixed per-stage properties of the search space (supernet_config)
FIRST_CONV_STRIDE = 2
STAGE_STRIDE = [1, 2, 2, 2, 1, 2, 1]                      # mb1..mb7, first block only
STAGE_SE = [False, False, True, False, True, True, True]  # mb1..mb7
HEAD_EXPAND = 6                                           # use_v3_head: final_expand = 6*C
N_CLASSES = 1000
SE_REDUCTION = 4


def make_divisible(v, divisor=8, min_value=1):
    """Same rounding rule as the slim/OFA helper (nearest multiple, >=90%)."""
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def conv_out(size, k, s):
    pad = k // 2  # 'same' padding for odd k
    return (size + 2 * pad - k) // s + 1


class Counter:
    def __init__(self):
        self.macs = 0
        self.params = 0          # as the official profiler reports
        self.unused_params = 0   # parameters of shortcut convs that never run

    def conv(self, cin, cout, k, hout, groups=1, bias=False, bn=False, run=True):
        p = cout * (cin // groups) * k * k + (cout if bias else 0) + (2 * cout if bn else 0)
        self.params += p
        if run:
            self.macs += cin * (cout * hout * hout) * k * k // groups
        else:
            self.unused_params += p

    def linear(self, fin, fout, bias=True):
        self.params += fin * fout + (fout if bias else 0)
        self.macs += fin * fout


def count(cfg):
    c = Counter()
    w, ks, er, dp = cfg["width"], cfg["kernel_size"], cfg["expand_ratio"], cfg["depth"]
    size = cfg["resolution"]

    # first conv: 3x3 s2, BN, swish, no bias
    size = conv_out(size, 3, FIRST_CONV_STRIDE)
    c.conv(3, w[0], 3, size, bn=True)
    cin = w[0]

    for st in range(7):
        cout, k, e = w[st + 1], ks[st], er[st]
        for b in range(dp[st]):
            stride = STAGE_STRIDE[st] if b == 0 else 1
            mid = make_divisible(round(cin * e), 8)
            # inverted bottleneck 1x1 (absent when expand_ratio == 1), at input size
            if e != 1:
                c.conv(cin, mid, 1, size, bn=True)
            # depthwise kxk, stride on the first block of the stage
            size = conv_out(size, k, stride)
            c.conv(mid, mid, k, size, groups=mid, bn=True)
            # squeeze-excite after dw act: two 1x1 convs with bias on 1x1 map
            if STAGE_SE[st]:
                se = make_divisible(mid // SE_REDUCTION, 8)
                c.conv(mid, se, 1, 1, bias=True)
                c.conv(se, mid, 1, 1, bias=True)
            # point-linear 1x1 + BN (no act)
            c.conv(mid, cout, 1, size, bn=True)
            # shortcut: always present (residual add in every block);
            # avgpool(stride) if stride>1; 1x1 conv (no BN/bias) only if cin != cout,
            # applied after pooling (output resolution).  The conv module exists
            # (and its weights are counted as params) even when not executed.
            c.conv(cin, cout, 1, size, run=(cin != cout))
            cin = cout

    # MobileNetV3 head: 1x1 -> 6C (BN, swish), global pool, 1x1 -> last (no BN, no bias, swish)
    cexp = HEAD_EXPAND * cin
    c.conv(cin, cexp, 1, size, bn=True)
    c.conv(cexp, w[-1], 1, 1)
    # classifier: Linear(last, 1000, bias=True)
    c.linear(w[-1], N_CLASSES)
    return c


def main():
    ok = True
    for name, cfg in CONFIGS.items():
        c = count(cfg)
        mf = c.macs / 1e6
        match = round(mf) == PUBLISHED_MFLOPS[name]
        ok &= match
        print("%s res=%d MACs=%d MFLOPs=%.3f (published %d, round-match=%s) "
              "params=%d (%.4fM, profiler) effective_params=%d (%.4fM, w/o unused shortcut convs)"
              % (name, cfg["resolution"], c.macs, mf, PUBLISHED_MFLOPS[name], match,
                 c.params, c.params / 1e6, c.params - c.unused_params,
                 (c.params - c.unused_params) / 1e6))
    print("all match published (round to nearest):", ok)


if __name__ == "__main__":
    main()
