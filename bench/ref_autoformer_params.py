#!/usr/bin/env python3
"""Reference params / MACs for AutoFormer-T/S/B (pure Python, no torch).

Independent re-implementation (not a copy) of the counting used by the official
code, microsoft/Cream (== microsoft/AutoML) folder AutoFormer/, HEAD 4a13c40:
  model/supernet_transformer.py::Vision_TransformerSuper.get_sampled_params_numel
  model/module/{Linear_super,qkv_super,layernorm_super,embedding_super,
                multihead_super}.py :: calc_sampled_param_num

Official run flags (README): --gp --change_qk(v) --relative_position,
max_relative_position=14 (default), patch 16, 224x224, qkv_bias=True
(hard-coded in supernet_train.py), 1000 classes, abs pos embed on.

Official parameter counter = sum of calc_sampled_param_num() over every module
that has it (blocks with index >= layer_num skipped) + embed*(2+num_patches):
  patch_embed conv  W[:E] + b[:E]           3*16*16*E + E
  per layer i < depth:
    attn_layer_norm   2E
    qkv (qkv_super)   E*3*64h + 3*64h       (bias on)
    rel_pos_embed_k   2 tables (v,h) of (2*14+2, 64) sliced [:, :64]  -> 3840
    rel_pos_embed_v   same                                             -> 3840
    AttentionSuper itself returns 0
    proj              64h*E + E
    ffn_layer_norm    2E
    fc1               E*int(E*r) + int(E*r)
    fc2               int(E*r)*E + E
  final norm          2E
  head                E*1000 + 1000
  + E*(2+196): cls token (E) + pos_embed (197*E)
i.e. the official counter counts *every* tensor the sampled subnet uses; it
equals a full count of the sliced tensors.

Result: S = 22,891,432 (22.9M) and B = 53,691,688 (53.7M) match the paper only
with rel-pos tables AND qkv bias counted (without rel-pos: 22.79M / 53.58M).
T (released yaml) = 5,867,944 (5.87M): does NOT match the paper's 5.7M under
any inclusion rule that keeps S/B matching; README lists this released
T checkpoint as 5.8M / 75.3% (paper T: 5.7M / 74.7%), i.e. a different model.
Sanity: DeiT-Ti (E192, 12x, h3, r4, no rel-pos) = 5,717,416 (known 5.7M).
"""

PATCH = 16
IMG = 224
IN_CH = 3
NUM_CLASSES = 1000
HEAD_DIM = 64           # change_qkv: sample_q_embed_dim = 64 * num_heads
MAX_REL = 14            # table rows = 2*MAX_REL + 2 = 30
N_PATCH = (IMG // PATCH) ** 2   # 196
N_TOK = N_PATCH + 1             # 197

# experiments/supernet/supernet-*.yaml
SUPERNETS = {
    "T": dict(super_embed=256, super_heads=4, super_mlp=4.0, super_depth=14,
              embed=[192, 216, 240], heads=[3, 4], mlp=[3.5, 4], depth=[12, 13, 14]),
    "S": dict(super_embed=448, super_heads=7, super_mlp=4.0, super_depth=14,
              embed=[320, 384, 448], heads=[5, 6, 7], mlp=[3.0, 3.5, 4.0], depth=[12, 13, 14]),
    # note: experiments/subnet/AutoFormer-B.yaml lists NUM_HEADS [8, 9, 10]
    "B": dict(super_embed=640, super_heads=10, super_mlp=4.0, super_depth=16,
              embed=[528, 576, 624], heads=[9, 10], mlp=[3.0, 3.5, 4.0], depth=[14, 15, 16]),
}

# experiments/subnet/AutoFormer-*.yaml, RETRAIN section (embed shared by all layers)
SUBNETS = {
    "T": dict(embed=192, depth=13,
              mlp=[3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5],
              heads=[3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3]),
    "S": dict(embed=384, depth=13,
              mlp=[3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0],
              heads=[6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7]),
    "B": dict(embed=576, depth=14,
              mlp=[3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0, 3.0, 4.0, 3.0, 3.5],
              heads=[9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10]),
}
PUBLISHED_M = {"T": 5.7, "S": 22.9, "B": 53.7}   # paper; README lists T as 5.8M


def layer_params(E, h, r, rel_pos=True, qkv_bias=True):
    """Dict of per-layer tensors -> numel, official sampled shapes."""
    q = HEAD_DIM * h
    F = int(E * r)
    rows = 2 * MAX_REL + 2
    d = {
        "attn_layer_norm.weight (E)": E,
        "attn_layer_norm.bias (E)": E,
        "attn.qkv.weight (3*64h, E)": 3 * q * E,
        "attn.qkv.bias (3*64h)": 3 * q if qkv_bias else 0,
        "attn.proj.weight (E, 64h)": E * q,
        "attn.proj.bias (E)": E,
        "ffn_layer_norm.weight (E)": E,
        "ffn_layer_norm.bias (E)": E,
        "fc1.weight (int(E*r), E)": F * E,
        "fc1.bias (int(E*r))": F,
        "fc2.weight (E, int(E*r))": E * F,
        "fc2.bias (E)": E,
    }
    if rel_pos:
        for kv in ("k", "v"):
            for t in ("v", "h"):
                d["attn.rel_pos_embed_%s.embeddings_table_%s (30, 64)" % (kv, t)] = rows * HEAD_DIM
    return d


def global_params(E):
    return {
        "patch_embed.proj.weight (E,3,16,16)": E * IN_CH * PATCH * PATCH,
        "patch_embed.proj.bias (E)": E,
        "cls_token (1,1,E)": E,
        "pos_embed (1,197,E)": N_TOK * E,
        "norm.weight (E)": E,
        "norm.bias (E)": E,
        "head.weight (1000,E)": NUM_CLASSES * E,
        "head.bias (1000)": NUM_CLASSES,
    }


def count_params(cfg, rel_pos=True, qkv_bias=True):
    E = cfg["embed"]
    tot = sum(global_params(E).values())
    for i in range(cfg["depth"]):
        tot += sum(layer_params(E, cfg["heads"][i], cfg["mlp"][i], rel_pos, qkv_bias).values())
    return tot


def macs(cfg, N=N_TOK):
    """Convention: conv Cin*k*k*Cout*Hout*Wout; linear in*out per token (no bias);
    attention matmuls separately.  N=197 tokens (CLS kept in every block).
    Head runs on one vector (README uses --gp: mean over the 196 patch tokens
    after the final norm; without --gp the CLS token) -> E*1000."""
    E = cfg["embed"]
    out = dict(patch=IN_CH * PATCH * PATCH * E * N_PATCH, qkv=0, proj=0, fc1=0, fc2=0,
               qk=0, av=0, rel_qk=0, rel_av=0, head=E * NUM_CLASSES)
    for i in range(cfg["depth"]):
        h, r = cfg["heads"][i], cfg["mlp"][i]
        q = HEAD_DIM * h
        F = int(E * r)
        out["qkv"] += N * E * 3 * q
        out["proj"] += N * q * E
        out["fc1"] += N * E * F
        out["fc2"] += N * F * E
        out["qk"] += N * N * q          # Q K^T
        out["av"] += N * N * q          # A V
        out["rel_qk"] += N * N * q      # q . r_k  (N,hB,64)@(N,64,N)
        out["rel_av"] += N * N * q      # attn . r_v (N,hB,N)@(N,N,64)
    return out


def official_get_complexity(cfg, seq=N_PATCH):
    """Vision_TransformerSuper.get_complexity(sequence_length) re-implemented
    exactly (never called anywhere in the official repo).  Note the double +1:
    blocks receive seq+1 and add +1 again -> token count seq+2 inside blocks."""
    E = cfg["embed"]
    t = E + seq * (E * IN_CH * PATCH * PATCH)        # patch embed (bias + weight)
    t += N_TOK * E / 2.0                               # pos_embed numel / 2
    L = seq + 2
    for i in range(cfg["depth"]):
        h, r = cfg["heads"][i], cfg["mlp"][i]
        q = HEAD_DIM * h
        F = int(E * r)
        t += L * E                                     # LN1
        t += L * E * 3 * q                             # qkv
        t += 2 * L * L * q                             # attn + x
        t += L * q * E                                 # proj
        t += MAX_REL * L * L + L * L / 2.0             # rel pos k
        t += MAX_REL * L * L + L * q / 2.0             # rel pos v
        t += L * E                                     # LN2
        t += L * E * F + L * F * E                     # fc1, fc2
    t += (seq + 1) * E * NUM_CLASSES                   # head over seq+1 tokens
    return t


def main():
    print("per-layer tensors (E=192, h=3, r=3.5):")
    for k, v in layer_params(192, 3, 3.5).items():
        print("   %-55s %d" % (k, v))
    deit = dict(embed=192, depth=12, mlp=[4.0] * 12, heads=[3] * 12)
    print("DeiT-Ti sanity (no rel-pos) = %d" % count_params(deit, rel_pos=False))
    for name in ("T", "S", "B"):
        cfg = SUBNETS[name]
        assert len(cfg["mlp"]) == len(cfg["heads"]) == cfg["depth"]
        full = count_params(cfg)
        no_rel = count_params(cfg, rel_pos=False)
        no_qkvb = count_params(cfg, qkv_bias=False)
        m = macs(cfg)
        lin = m["patch"] + m["qkv"] + m["proj"] + m["fc1"] + m["fc2"] + m["head"]
        att = m["qk"] + m["av"]
        rel = m["rel_qk"] + m["rel_av"]
        print("AutoFormer-%s  E=%d depth=%d" % (name, cfg["embed"], cfg["depth"]))
        print("  params official (rel-pos on, qkv bias)  = %d  (%.2fM, published %.1fM)"
              % (full, full / 1e6, PUBLISHED_M[name]))
        print("  params without rel-pos tables           = %d  (%.2fM)" % (no_rel, no_rel / 1e6))
        print("  params without qkv bias                 = %d  (%.2fM)" % (no_qkvb, no_qkvb / 1e6))
        print("  rel-pos tables total                    = %d" % (full - no_rel))
        print("  MACs: patch=%d qkv=%d proj=%d fc1=%d fc2=%d head=%d"
              % (m["patch"], m["qkv"], m["proj"], m["fc1"], m["fc2"], m["head"]))
        print("        QK^T=%d AV=%d relpos_qk=%d relpos_av=%d" % (m["qk"], m["av"], m["rel_qk"], m["rel_av"]))
        print("        conv+linear=%d (%.4fG)  +QK/AV=%d (%.4fG)  +relpos=%d (%.4fG)"
              % (lin, lin / 1e9, lin + att, (lin + att) / 1e9, lin + att + rel, (lin + att + rel) / 1e9))
        print("  matches published %.1fM (round to 0.1M): %s"
              % (PUBLISHED_M[name], round(full / 1e6, 1) == PUBLISHED_M[name]))
        oc = official_get_complexity(cfg)
        print("  official get_complexity(196) (unused in repo) = %.1f (%.4fG)" % (oc, oc / 1e9))


if __name__ == "__main__":
    main()
