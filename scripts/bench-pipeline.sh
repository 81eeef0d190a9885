#!/usr/bin/env bash
# The input-pipeline benchmark (issue: streaming, augmenting input pipeline). Generates its own
# ImageNet-like JPEG folder under target/bench-data (5,000 images ~500x375 at quality 90; 10k and
# 50k variants by hard links), then measures in one run:
#   1. images/s of `nas bench-data` against torchvision ImageFolder + DataLoader (bench/peer_pipeline.py),
#      RandomResizedCrop 224 + flip + normalise, batch 64, 2 workers (colour jitter off on both);
#   2. peak RSS of `nas bench-data` streaming the 10k and 50k folders;
#   3. `nas train` on the 5k folder with the imagenet preset at 32x32: the data-wait share.
# Usage: scripts/bench-pipeline.sh   (after scripts/setup.sh; installs torchvision + pillow + numpy into .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
PY=.venv/bin/python
$PY -c "import torchvision, PIL, numpy" 2>/dev/null || .venv/bin/pip install -q torchvision==0.28.0 pillow numpy --no-deps
cargo build --release -p nas-host -q
NAS=target/release/nas
DATA=target/bench-data
$PY bench/gen_image_folder.py $DATA/folder-5k --images 5000
echo "== 1. pipeline alone, 224x224, batch 64, 2 workers"
$NAS bench-data --folder $DATA/folder-5k --batches 50 --color-jitter 0
$PY bench/peer_pipeline.py $DATA/folder-5k --batches 50
echo "== 2. peak RSS while streaming (images/s at 64x64)"
for copies in 2 10; do
    dir=$DATA/folder-$((copies * 5))k
    mkdir -p "$dir"
    # Hard links of the 5k folder's files: the index sees copies x 5000 images.
    (cd $DATA/folder-5k && find . -type d -exec mkdir -p "../$(basename "$dir")/{}" \;)
    find $DATA/folder-5k -name '*.jpg' | while read -r f; do
        rel=${f#$DATA/folder-5k/}
        for k in $(seq 1 $((copies - 1))); do
            ln -f "$f" "$dir/${rel%.jpg}-copy$k.jpg"
        done
        ln -f "$f" "$dir/$rel"
    done
    $NAS bench-data --folder "$dir" --batches 100 --resolution 64 --color-jitter 0
done
echo "== 3. nas train, imagenet preset at 32x32, 2 workers"
out=$(mktemp -d)
$NAS train --set run.out_dir="$out" --set run.name=folder --set data.dataset='"image-folder"' \
    --set data.path=$DATA/folder-5k --set data.image_folder.size=32 --set data.augment.preset='"imagenet"' \
    --set data.workers=2 --set train.steps=60 --set train.batch_size=64 --set train.progress=false \
    --set space.config.channels=16 --set space.config.cells_per_stage=2
rm -rf "$out"
