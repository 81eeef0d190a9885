#!/usr/bin/env python3
"""PyTorch eager peer of `nas bench`: NB201 supernet training steps/s with xautodl's official
weight-sharing model (`TinyNetworkRANDOM`), uniform random path per step, SGD (momentum 0.9,
Nesterov, wd 5e-4), synthetic 3x32x32 input. Prints one JSON line."""
import argparse, json, random, time

import torch
import torch.nn as nn
from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM
from xautodl.models.cell_operations import NAS_BENCH_201


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = TinyNetworkRANDOM(args.channels, args.cells, 4, 10, NAS_BENCH_201, affine=False, track_running_stats=True)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    total = args.steps + args.warmup
    images = torch.randn(total, args.batch, 3, args.resolution, args.resolution)
    labels = torch.randint(0, 10, (total, args.batch))

    def step(i):
        model.random_genotype(True)
        optimizer.zero_grad(set_to_none=True)
        _, logits = model(images[i])
        criterion(logits, labels[i]).backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    started = time.perf_counter()
    for i in range(args.warmup, total):
        step(i)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "peer": "xautodl TinyNetworkRANDOM (PyTorch eager)",
        "torch": torch.__version__,
        "options": f"nb201 C={args.channels} N={args.cells} batch={args.batch} {args.resolution}x{args.resolution} threads={args.threads} steps={args.steps} warmup={args.warmup}",
        "steps_per_s": args.steps / seconds,
        "mean_step_ms": 1000 * seconds / args.steps,
    }))


if __name__ == "__main__":
    main()
