#!/usr/bin/env bash
# Runs the same fixed-seed jobs with two builds of nas and checks that they behave identically:
# metrics.jsonl (minus the wall-clock field images_per_s), the final checkpoint's tensors and
# state, search results, exports, and `nas demo`'s summary (minus its timing line) byte for byte.
#
#   scripts/compare-behaviour.sh BASE_DIR NEW_DIR [--full-demo]
#
# BASE_DIR and NEW_DIR each hold a `nas` binary with its plugin libraries beside it (copy
# target/release/{nas,lib*.so} of each commit into a folder). Used to show that a restructuring
# changed no behaviour; the jobs are short (a few minutes in all on 2 cores) unless --full-demo
# runs the demo at its real budget. Needs data/fashion-mnist (scripts/setup.sh).
set -euo pipefail
base=$(realpath "$1")
new=$(realpath "$2")
full_demo=${3:-}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$root"

fmnist="--set data.dataset=fashion-mnist"
# name | nas arguments (the run folder is added)
jobs=(
  "nb201-uniform|train -c examples/configs/nb201-uniform.toml $fmnist --set train.steps=60 --set data.holdout=500 --set run.threads=1"
  "dynas-fairnas|train -c examples/configs/dynas-fairnas.toml $fmnist --set train.steps=40 --set data.holdout=500 --set run.threads=1"
  "sandwich|train -c examples/configs/sandwich.toml $fmnist --set train.steps=30 --set run.threads=1"
  "cnn|train -c examples/configs/cnn-small-uniform.toml $fmnist --set train.steps=20 --set run.threads=1"
  "shiftnas-vit|train -c examples/configs/dynas-shiftnas-vit-mini.toml $fmnist --set train.steps=40 --set data.holdout=500 --set run.threads=1 --set sampler.config.base_config.warmup_fraction=0.25 --set sampler.config.base_config.update_every=10"
)

failed=0
strip_metrics() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    record = json.loads(line)
    record.pop("images_per_s", None)
    print(json.dumps(record, sort_keys=True))
' "$1"; }

tensor_digest() { python3 -c '
# One line per tensor of a safetensors file (name, dtype, shape, SHA-256 of its bytes), read with
# the format itself (8-byte header length, JSON header, data), so no Python packages are needed.
import hashlib, json, struct, sys
data = open(sys.argv[1], "rb").read()
(length,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + length])
body = data[8 + length:]
for name in sorted(k for k in header if k != "__metadata__"):
    entry = header[name]
    start, end = entry["data_offsets"]
    print(name, entry["dtype"], entry["shape"], hashlib.sha256(body[start:end]).hexdigest())
' "$1"; }

compare() { # label file_a file_b
  if cmp -s "$2" "$3"; then
    echo "  same: $1"
  else
    echo "  DIFFERENT: $1"; diff <(head -c 2000 "$2") <(head -c 2000 "$3") | head -20 || true
    failed=1
  fi
}

run_job() { # side bin name args...
  local side=$1 bin=$2 name=$3; shift 3
  local out="$work/$side/$name"
  mkdir -p "$out"
  # shellcheck disable=SC2068
  "$bin/nas" $@ --set "run.out_dir=$out" --set "run.name=run" --set train.progress=false >"$out/stdout" 2>"$out/stderr" || {
    echo "  $side $name failed:"; tail -5 "$out/stderr"; failed=1; return 0; }
}

for job in "${jobs[@]}"; do
  name=${job%%|*}; args=${job#*|}
  echo "== $name"
  for side in base new; do
    bin=$base; [[ $side == new ]] && bin=$new
    # shellcheck disable=SC2086
    run_job "$side" "$bin" "$name" $args
  done
  a="$work/base/$name/run"; b="$work/new/$name/run"
  [[ -f $a/metrics.jsonl && -f $b/metrics.jsonl ]] || { failed=1; continue; }
  strip_metrics "$a/metrics.jsonl" >"$work/ma"; strip_metrics "$b/metrics.jsonl" >"$work/mb"
  compare "metrics.jsonl ($(wc -l <"$work/ma") steps)" "$work/ma" "$work/mb"
  last_a=$(ls -d "$a"/checkpoints/step-* | tail -1); last_b=$(ls -d "$b"/checkpoints/step-* | tail -1)
  tensor_digest "$last_a/weights.safetensors" >"$work/wa"; tensor_digest "$last_b/weights.safetensors" >"$work/wb"
  compare "final weights ($(wc -l <"$work/wa") tensors, $(basename "$last_a"))" "$work/wa" "$work/wb"
  compare "final checkpoint state.json" "$last_a/state.json" "$last_b/state.json"
  # The run folder's own path differs between the sides; everything else must not.
  sed "s#$work/base#RUN#g" "$a/config.toml" >"$work/ca"; sed "s#$work/new#RUN#g" "$b/config.toml" >"$work/cb"
  compare "config.toml" "$work/ca" "$work/cb"
done

# Search, eval and export on the first run (they read the run folder; each side its own).
echo "== search / eval / export on nb201-uniform"
for side in base new; do
  bin=$base; [[ $side == new ]] && bin=$new
  run="$work/$side/nb201-uniform/run"
  "$bin/nas" search --run "$run" --population 6 --iterations 2 --top-k 3 --mutations 3 --crossovers 3 --calib-batches 3 --holdout-examples 300 --max-macs 20e6 --name s >"$work/$side/search.out" 2>/dev/null || failed=1
  "$bin/nas" eval --run "$run" --arch '[3,3,3,3,3,3]' --bn recalibrate --calib-batches 3 >"$work/$side/eval.out" 2>/dev/null || failed=1
  "$bin/nas" export --run "$run" --arch "@$run/search/s/best.json" --calib-batches 3 --out "$work/$side/export" >/dev/null 2>&1 || failed=1
  sed "s#$work/$side#RUN#g" "$work/$side/search.out" >"$work/$side/search.txt"
  sed "s#$work/$side#RUN#g" "$work/$side/eval.out" >"$work/$side/eval.txt"
done
compare "nas search output" "$work/base/search.txt" "$work/new/search.txt"
compare "search candidates.csv" "$work/base/nb201-uniform/run/search/s/candidates.csv" "$work/new/nb201-uniform/run/search/s/candidates.csv"
compare "nas eval output" "$work/base/eval.txt" "$work/new/eval.txt"
tensor_digest "$work/base/export/weights.safetensors" >"$work/ea"; tensor_digest "$work/new/export/weights.safetensors" >"$work/eb"
compare "exported weights" "$work/ea" "$work/eb"

echo "== demo"
demo_set=(--set train.steps=150)
[[ $full_demo == --full-demo ]] && demo_set=()
for side in base new; do
  bin=$base; [[ $side == new ]] && bin=$new
  "$bin/nas" demo --out-dir "$work/$side/demo" "${demo_set[@]}" --set train.progress=false \
    >"$work/$side/demo.out" 2>/dev/null || { echo "  $side demo failed"; failed=1; }
  # The train line holds wall-clock figures; every other line must match.
  grep -v '^train ' "$work/$side/demo.out" | sed "s#$work/$side#RUN#g" >"$work/$side/demo.txt"
done
compare "nas demo summary (${demo_set[*]:-full budget})" "$work/base/demo.txt" "$work/new/demo.txt"
sed -n '/^best subnet/,/^accuracy/p' "$work/new/demo.txt"
strip_metrics "$work/base/demo/demo/metrics.jsonl" >"$work/ma"; strip_metrics "$work/new/demo/demo/metrics.jsonl" >"$work/mb"
compare "demo metrics.jsonl" "$work/ma" "$work/mb"

if [[ $failed -ne 0 ]]; then
  echo "behaviour differs (or a job failed)"; exit 1
fi
echo "identical behaviour: every compared output is byte-identical"
