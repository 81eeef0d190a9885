"""The peer of `nas bench-data`: torchvision ImageFolder + DataLoader with the same transforms
(RandomResizedCrop(res, scale 0.08-1, ratio 3/4-4/3) + horizontal flip [+ colour jitter] +
ToTensor + Normalize), batch 64, num_workers 2, timed after 3 warm-up batches.

  python bench/peer_pipeline.py ROOT [--resolution 224] [--batch 64] [--workers 2] [--batches 50]
"""
import argparse
import json
import resource
import time

import torch
from torchvision import datasets, transforms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--color-jitter", type=float, default=0.0)
    args = parser.parse_args()
    steps = [
        transforms.RandomResizedCrop(args.resolution),
        transforms.RandomHorizontalFlip(),
    ]
    if args.color_jitter > 0:
        cj = args.color_jitter
        steps.append(transforms.ColorJitter(cj, cj, cj))
    steps += [
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
    started = time.perf_counter()
    dataset = datasets.ImageFolder(f"{args.root}/train", transforms.Compose(steps))
    index_seconds = time.perf_counter() - started
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        persistent_workers=args.workers > 0,
        prefetch_factor=2 if args.workers > 0 else None,
    )
    batches = iter(loader)
    for _ in range(3):
        next(batches)
    timed = time.perf_counter()
    images = 0
    for _ in range(args.batches):
        x, _ = next(batches)
        images += x.shape[0]
    seconds = time.perf_counter() - timed
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "peer": "torchvision ImageFolder + DataLoader",
                "train_images": len(dataset),
                "index_seconds": index_seconds,
                "resolution": args.resolution,
                "batch": args.batch,
                "workers": args.workers,
                "images_per_s": images / seconds,
                "peak_rss_mib_main": peak,
                "peak_rss_mib_largest_worker": peak_children,
            }
        )
    )


if __name__ == "__main__":
    main()
