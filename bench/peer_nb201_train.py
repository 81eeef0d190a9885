#!/usr/bin/env python3
"""PyTorch peer of `nas train` + `nas eval` for the NAS-Bench-201 supernet on Fashion-MNIST.

Trains xautodl's official weight-sharing model (`TinyNetworkRANDOM`, PyPI `xautodl`, installed
with --no-deps) with uniform single-path sampling and the same recipe as the Rust run, then
evaluates one arch with batch-statistics BN. Prints one JSON line.

Recipe (issue acceptance 5): C=16, N=1, batch 64, SGD lr 0.05 cosine to 0 (per step), momentum
0.9, Nesterov, weight decay 5e-4, no augmentation, 1 epoch; eval batch 256.
The official model hard-codes a 3-channel stem; the peer swaps in a 1-channel stem conv.
"""
import argparse, gzip, json, math, random, struct, time
from pathlib import Path

import torch
import torch.nn as nn
from xautodl.models.cell_searchs.search_model_random import TinyNetworkRANDOM
from xautodl.models.cell_searchs.genotypes import Structure
from xautodl.models.cell_operations import NAS_BENCH_201

MEAN, STD = 0.2860, 0.3530


def read_idx(images_path, labels_path):
    with gzip.open(images_path, "rb") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 0x0803, images_path
        pixels = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(n, 1, h, w)
    with gzip.open(labels_path, "rb") as f:
        magic, n2 = struct.unpack(">II", f.read(8))
        assert magic == 0x0801 and n2 == n, labels_path
        labels = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    images = (pixels.float() / 255.0 - MEAN) / STD
    return images, labels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="data/fashion-mnist")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--eval-batch", type=int, default=256)
    p.add_argument("--arch", default="|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    data = Path(args.data)
    train_x, train_y = read_idx(data / "train-images-idx3-ubyte.gz", data / "train-labels-idx1-ubyte.gz")
    test_x, test_y = read_idx(data / "t10k-images-idx3-ubyte.gz", data / "t10k-labels-idx1-ubyte.gz")

    model = TinyNetworkRANDOM(args.channels, args.cells, 4, 10, NAS_BENCH_201, affine=False, track_running_stats=True)
    model.stem[0] = nn.Conv2d(1, args.channels, kernel_size=3, padding=1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = len(train_y) // args.batch
    total = steps_per_epoch * args.epochs
    criterion = nn.CrossEntropyLoss()

    model.train()
    started = time.time()
    step = 0
    for epoch in range(args.epochs):
        order = torch.randperm(len(train_y))
        for b in range(steps_per_epoch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            lr = 0.5 * args.lr * (1 + math.cos(math.pi * step / total))
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.random_genotype(True)
            optimizer.zero_grad(set_to_none=True)
            _, logits = model(train_x[idx])
            loss = criterion(logits, train_y[idx])
            loss.backward()
            optimizer.step()
            step += 1
    train_seconds = time.time() - started

    model.arch_cache = Structure.str2structure(args.arch)
    model.train()  # batch statistics at eval, as NAS-Bench-201 evaluates supernet subnets
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_y), args.eval_batch):
            _, logits = model(test_x[start:start + args.eval_batch])
            correct += (logits.argmax(-1) == test_y[start:start + args.eval_batch]).sum().item()
    print(json.dumps({
        "peer": "xautodl TinyNetworkRANDOM",
        "torch": torch.__version__,
        "steps": total,
        "train_seconds": round(train_seconds, 1),
        "arch": args.arch,
        "bn": "batch-stats",
        "accuracy": 100.0 * correct / len(test_y),
    }))


if __name__ == "__main__":
    main()
