#!/usr/bin/env python3
"""PyTorch DDP peer of `scripts/bench-distributed.sh`: NB201 supernet training with xautodl's
official weight-sharing model (`TinyNetworkRANDOM`), uniform random path per step (the same on
every rank: seeded by step), SGD (momentum 0.9, Nesterov, wd 5e-4), synthetic 3x32x32 input, the
global batch split over the ranks, gradients averaged by DistributedDataParallel over Gloo
(`find_unused_parameters=True`, as a supernet's unused paths need). Run under
`torchrun --nproc-per-node N`; rank 0 prints one JSON line (images/s of all ranks together)."""
import argparse, json, random, time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM
from xautodl.models.cell_operations import NAS_BENCH_201


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = TinyNetworkRANDOM(args.channels, args.cells, 4, 10, NAS_BENCH_201, affine=False, track_running_stats=True)
    model.train()
    ddp = DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    local = args.batch // world
    total = args.steps + args.warmup
    images = torch.randn(total, local, 3, args.resolution, args.resolution)
    labels = torch.randint(0, 10, (total, local))

    def step(i):
        random.seed(args.seed * 1_000_003 + i)  # the same path on every rank
        model.random_genotype(True)
        optimizer.zero_grad(set_to_none=True)
        _, logits = ddp(images[i])
        criterion(logits, labels[i]).backward()
        optimizer.step()

    for i in range(args.warmup):
        step(i)
    dist.barrier()
    started = time.perf_counter()
    for i in range(args.warmup, total):
        step(i)
    dist.barrier()
    seconds = time.perf_counter() - started
    if rank == 0:
        print(json.dumps({
            "peer": "xautodl TinyNetworkRANDOM + DistributedDataParallel (Gloo)",
            "torch": torch.__version__,
            "options": f"nb201 C={args.channels} N={args.cells} global batch={args.batch} processes={world} threads={args.threads} steps={args.steps}",
            "images_per_s": args.steps * args.batch / seconds,
            "mean_step_ms": 1000 * seconds / args.steps,
        }))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
