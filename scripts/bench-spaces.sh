#!/usr/bin/env bash
# Elastic-space benchmarks, each in one run:
#  1. slicing overhead: a supernet trained at one fixed subnet vs the same subnet rebuilt as a plain
#     model (`nas bench --compare-plain`), for the small CNN, AttentiveNAS-A0 and a ViT-Tiny subnet;
#  2. ViT-Tiny supernet steps/s (batch 32, 224x224, AutoFormer-Tiny space at embed 192, depth 12,
#     3 heads, MLP ratio 4, relative positions) against a plain PyTorch eager ViT of the same dims
#     (bench/peer_vit.py).
# Needs scripts/setup.sh. Takes about 6 minutes on 2 cores. Pass --steps N to change the timed steps.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
steps=20
if [[ "${1:-}" == "--steps" ]]; then steps=$2; fi
nas=./target/release/nas
ratio() {
    python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
for r in rows:
    print("  %-13s %.3f steps/s (%.1f ms)" % (r["model"], r["steps_per_s"], r["mean_step_ms"]))
print("  slicing overhead %.3fx" % (rows[0]["mean_step_ms"] / rows[1]["mean_step_ms"]))'
}
echo "== slicing overhead: attentivenas-small (32x32, batch 64)"
$nas bench --json --space cnn --space-config '{"preset":"attentivenas-small","input_channels":3,"resolution":32}' \
    --resolution 32 --batch 64 --steps $((steps * 2)) \
    --arch '{"resolution":32,"width":[16,16,24,32,64,384],"depth":[2,2,3,2],"kernel":[5,3,5,3],"expand":[1,6,4,3]}' \
    --compare-plain | ratio
echo "== slicing overhead: AttentiveNAS-A0 in the attentivenas space (192x192, batch 16)"
$nas bench --json --space cnn --resolution 224 --batch 16 --steps "$steps" --warmup 3 \
    --arch '{"resolution":192,"width":[16,16,24,32,64,112,192,216,1792],"kernel":[3,3,3,3,3,3,3],"expand":[1,4,4,4,4,6,6],"depth":[1,3,3,3,3,3,1]}' \
    --compare-plain | ratio
vit_arch='{"embed_dim":192,"depth":12,"heads":[3,3,3,3,3,3,3,3,3,3,3,3],"mlp_ratio":[4,4,4,4,4,4,4,4,4,4,4,4]}'
echo "== slicing overhead and speed: ViT-Tiny subnet of the autoformer-tiny space (224x224, batch 32)"
vit_json=$($nas bench --json --space vit --resolution 224 --batch 32 --steps "$steps" --warmup 3 \
    --arch "$vit_arch" --compare-plain)
echo "$vit_json" | ratio
echo "== PyTorch eager peer, same dims"
peer_json=$(.venv/bin/python bench/peer_vit.py --relative-position --batch 32 --steps "$steps" --warmup 3)
echo "  $peer_json"
python3 - "$vit_json" "$peer_json" <<'PY'
import json, sys
ours = json.loads(sys.argv[1].splitlines()[0])
peer = json.loads(sys.argv[2])
print(f"  ViT-Tiny supernet {ours['steps_per_s']:.3f} steps/s vs peer {peer['steps_per_s']:.3f}: "
      f"{ours['steps_per_s'] / peer['steps_per_s']:.2f}x")
PY
