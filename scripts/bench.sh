#!/usr/bin/env bash
# NB201 supernet training speed: `nas bench` against the PyTorch eager peer (bench/peer_nb201.py,
# xautodl's official model) on the same settings, in one run. Extra arguments go to both
# (e.g. --steps 100 --threads 1). Needs scripts/setup.sh and the peer (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
.venv/bin/python -c 'import xautodl' 2>/dev/null ||
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps xautodl==1.0.0
nas_json=$(./target/release/nas bench --json "$@")
peer_json=$(.venv/bin/python bench/peer_nb201.py "$@")
echo "nas : $nas_json"
echo "peer: $peer_json"
python3 - "$nas_json" "$peer_json" <<'PY'
import json, sys
ours, peer = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"speed-up: {ours['steps_per_s'] / peer['steps_per_s']:.2f}x "
      f"({ours['steps_per_s']:.2f} vs {peer['steps_per_s']:.2f} steps/s); "
      f"nas host overhead {ours['host_share_percent']:.2f}% of step time")
PY
