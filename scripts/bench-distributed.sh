#!/usr/bin/env bash
# Data-parallel training speed of the NB201 supernet (C=16, N=5, uniform sampling, synthetic
# 32x32 images, global batch 64): one process with one thread, one process with two threads, and
# two processes with one thread each (`nas launch -n 2`), as img/s from `nas train`, with the share
# of step time the two processes spend exchanging (gradient all-reduce, loss average, buffers).
# Extra arguments are passed to every run as --set items, e.g. `train.steps=400`.
# Needs scripts/setup.sh. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
nas=./target/release/nas
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

common=(
    --set run.out_dir="$out" --set run.device=cpu --set data.dataset=synthetic
    --set data.synthetic_train=8192 --set data.synthetic_resolution=32
    --set space.config.channels=16 --set space.config.cells_per_stage=5
    --set train.batch_size=64 --set train.steps=200 --set train.progress=false
    --set train.checkpoint_every=0
)
for item in "$@"; do common+=(--set "$item"); done

run() { # name, launcher..., then threads
    local name=$1 threads=$2
    shift 2
    "$@" train "${common[@]}" --set run.name="$name" --set run.threads="$threads" 2>/dev/null
}
echo "== 1 process, 1 thread"
run one-1 1 $nas | grep -E "trained"
echo "== 1 process, 2 threads"
run one-2 2 $nas | grep -E "trained"
echo "== 2 processes, 1 thread each (nas launch -n 2)"
run two-1 1 $nas launch -n 2 -- | grep -E "trained|exchanges"

# The PyTorch peer: the official NB201 supernet under DistributedDataParallel, same settings.
.venv/bin/python -c 'import xautodl' 2>/dev/null ||
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps xautodl==1.0.0
for processes in 1 2; do
    echo "== peer: PyTorch DDP, $processes process(es), 1 thread each"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    .venv/bin/torchrun --nproc-per-node "$processes" --master-addr 127.0.0.1 --master-port "$port" bench/peer_ddp_nb201.py \
        --threads 1 2>/dev/null
done
