#!/usr/bin/env python3
"""PyTorch eager peer of `nas bench --space vit`: a plain vision transformer with a given
subnet's dimensions (no weight sharing, no slicing), trained with SGD (momentum 0.9, Nesterov,
wd 5e-4, lr 0.05) and cross-entropy on synthetic images. Prints one JSON line.

The model is written here from the architecture's description (pre-norm blocks, q/k/v width of
64 per head, GELU MLP, class token, learned position embedding, optional AutoFormer-style 2-D
relative positions on keys and values), with the same layer order as the `vit` space.
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RelativePosition2d(nn.Module):
    """Learned row/column offset embeddings (clipped), index 0 for pairs with the class token."""

    def __init__(self, head_dim, max_distance, side):
        super().__init__()
        rows = 2 * max_distance + 2
        self.table_v = nn.Parameter(torch.randn(rows, head_dim) * 0.02)
        self.table_h = nn.Parameter(torch.randn(rows, head_dim) * 0.02)
        position = torch.arange(side * side)
        row, col = position // side, position % side

        def offsets(p):
            m = (p[None, :] - p[:, None]).clamp(-max_distance, max_distance) + max_distance + 1
            return F.pad(m, (1, 0, 1, 0))

        self.register_buffer("index_v", offsets(row), persistent=False)
        self.register_buffer("index_h", offsets(col), persistent=False)

    def forward(self):
        return self.table_v[self.index_v] + self.table_h[self.index_h]  # [t, t, d]


class Block(nn.Module):
    def __init__(self, embed, heads, mlp_ratio, head_dim, relative, side):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        width = heads * head_dim
        self.norm1 = nn.LayerNorm(embed, eps=1e-5)
        self.qkv = nn.Linear(embed, 3 * width)
        self.proj = nn.Linear(width, embed)
        self.norm2 = nn.LayerNorm(embed, eps=1e-5)
        hidden = int(embed * mlp_ratio)
        self.fc1 = nn.Linear(embed, hidden)
        self.fc2 = nn.Linear(hidden, embed)
        self.rel_k = RelativePosition2d(head_dim, 14, side) if relative else None
        self.rel_v = RelativePosition2d(head_dim, 14, side) if relative else None

    def attention(self, x):
        n, t, _ = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.rel_k is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            logits = (q @ k.transpose(-2, -1)) * scale
            logits = logits + torch.einsum("nhid,ijd->nhij", q, self.rel_k()) * scale
            a = logits.softmax(-1)
            out = a @ v + torch.einsum("nhij,ijd->nhid", a, self.rel_v())
        return self.proj(out.transpose(1, 2).reshape(n, t, -1))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VisionTransformer(nn.Module):
    def __init__(self, args, heads, ratios):
        super().__init__()
        side = args.resolution // args.patch
        self.patch_embed = nn.Conv2d(3, args.embed, args.patch, args.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, args.embed))
        self.pos_embed = nn.Parameter(torch.randn(1, side * side + 1, args.embed) * 0.02)
        self.blocks = nn.ModuleList(
            Block(args.embed, h, r, 64, args.relative_position, side) for h, r in zip(heads, ratios)
        )
        self.norm = nn.LayerNorm(args.embed, eps=1e-5)
        self.head = nn.Linear(args.embed, args.classes)

    def forward(self, images):
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def per_layer(text, depth, kind):
    values = [kind(v) for v in text.split(",")]
    return values * depth if len(values) == 1 else values


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--embed", type=int, default=192)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--heads", default="3", help="one value or one per layer, comma-separated")
    p.add_argument("--mlp-ratio", default="4", help="one value or one per layer, comma-separated")
    p.add_argument("--relative-position", action="store_true")
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    heads = per_layer(args.heads, args.depth, int)
    ratios = per_layer(args.mlp_ratio, args.depth, float)
    model = VisionTransformer(args, heads, ratios)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    pool = 4
    images = torch.randn(pool, args.batch, 3, args.resolution, args.resolution)
    labels = torch.randint(0, args.classes, (pool, args.batch))

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[i % pool]), labels[i % pool]).backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    started = time.perf_counter()
    for i in range(args.steps):
        step(i)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "peer": "plain ViT (PyTorch eager, bench/peer_vit.py)",
        "torch": torch.__version__,
        "options": f"embed={args.embed} depth={args.depth} heads={heads} mlp_ratio={ratios} "
                   f"relative_position={args.relative_position} batch={args.batch} "
                   f"{args.resolution}x{args.resolution} threads={args.threads} steps={args.steps}",
        "parameters": sum(t.numel() for t in model.parameters()),
        "steps_per_s": args.steps / seconds,
        "mean_step_ms": 1000 * seconds / args.steps,
    }))


if __name__ == "__main__":
    main()
