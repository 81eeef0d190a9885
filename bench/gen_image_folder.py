"""Writes an ImageNet-like image folder for the pipeline benchmark: ROOT/{train,val}/<class>/*.jpg,
about 500x375 JPEGs at quality 90 drawn from noise and gradients (a few classes, varied sizes).

  python bench/gen_image_folder.py ROOT --images 5000 [--classes 10] [--copies 1]

--copies K adds K-1 hard-linked copies of every training image under new names, so a folder of
K * N images costs the disk of N (for the memory-flatness run: what matters is the file count).
"""
import argparse
import os

import numpy as np
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    per_class = args.images // args.classes
    for split, count in (("train", per_class), ("val", max(1, per_class // 10))):
        for c in range(args.classes):
            folder = os.path.join(args.root, split, f"class{c:03d}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                path = os.path.join(folder, f"img{i:06d}.jpg")
                if not os.path.exists(path):
                    w = int(rng.integers(440, 560))
                    h = int(rng.integers(330, 420))
                    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
                    phase = c * 0.7
                    base = np.stack(
                        [
                            127 + 100 * np.sin(xs / (20 + 5 * c) + phase),
                            127 + 100 * np.cos(ys / (15 + 3 * c) - phase),
                            255 * (xs + ys) / (w + h),
                        ],
                        axis=-1,
                    )
                    noise = rng.normal(0, 25, size=(h, w, 3))
                    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(path, quality=90)
                if split == "train":
                    for k in range(1, args.copies):
                        link = os.path.join(folder, f"img{i:06d}-copy{k}.jpg")
                        if not os.path.exists(link):
                            os.link(path, link)


if __name__ == "__main__":
    main()
