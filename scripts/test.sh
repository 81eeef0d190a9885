#!/usr/bin/env bash
# Sets up a fresh machine (scripts/setup.sh: libtorch, Fashion-MNIST, release build), installs the
# PyTorch peer used by the learning test (PyPI xautodl, without its pinned dependencies) and
# safetensors for the export test, then
# runs formatting and lint checks and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import xautodl' 2>/dev/null; then
    echo "== peer: installing xautodl (--no-deps) for the PyTorch comparison test"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps xautodl==1.0.0
fi

if [[ -x .venv/bin/python ]] && ! .venv/bin/python -c 'import safetensors' 2>/dev/null; then
    echo "== peer: installing safetensors for the export test (Python loads the exported files)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check safetensors==0.8.0
fi

echo "== checks: module imports point one way (no cycles; nothing imports commands or, but commands, cli)"
python3 scripts/check-imports.py host/src --forbid '*:commands' --forbid '!commands:cli'
python3 scripts/check-imports.py sdk/src

echo "== checks: cargo fmt, cargo clippy"
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets --quiet -- -D warnings

echo "== tests"
# The integration tests drive the built binary, plugins and fixture plugins.
cargo build --release --workspace --lib --bins --examples --quiet
# An out-of-tree plugin crate, built the way a third party builds one (own workspace and target).
cargo build --release --quiet --manifest-path examples/third-party-sampler/Cargo.toml --target-dir target/third-party
cargo test --release --workspace -- --show-output
