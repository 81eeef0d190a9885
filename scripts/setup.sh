#!/usr/bin/env bash
# Sets up a fresh machine for nas, idempotently:
#   1. libtorch 2.13.0 (what tch 0.26 needs): the user's own $LIBTORCH if set, else PyPI's
#      torch==2.13.0 in a project-local virtualenv (.venv, ~4.7 GB with its CUDA dependencies);
#   2. gloo's C++ headers (PyTorch's wheel does not ship them; the c10d shim in dist/ needs them)
#      from Debian's libgloo-dev into .deps/gloo (no root needed; $NAS_GLOO_INCLUDE or an
#      installed /usr/include/gloo is used when present);
#   3. Fashion-MNIST from Debian's dataset-fashion-mnist into data/fashion-mnist (no root needed;
#      the installed copy under /usr/share/datasets/fashion-mnist is used when present);
#   4. a release build of the workspace (target/release/nas and the plugin libraries beside it).
# Prints the environment it used. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s\n' "$*"; }

# --- libtorch ---------------------------------------------------------------------------------
if [[ -n "${LIBTORCH:-}" ]]; then
    step "libtorch: using \$LIBTORCH=$LIBTORCH"
    unset LIBTORCH_USE_PYTORCH
else
    venv="$root/.venv"
    python="${PYTHON:-python3}"
    if ! "$venv/bin/python" -c 'import torch, sys; sys.exit(0 if torch.__version__.split("+")[0] == "2.13.0" else 1)' 2>/dev/null; then
        step "libtorch: installing torch==2.13.0 from PyPI into $venv (a few minutes)"
        [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check torch==2.13.0
    else
        step "libtorch: torch 2.13.0 already in $venv"
    fi
fi
# torch-sys finds libtorch through $LIBTORCH or the virtualenv's interpreter.
source "$root/scripts/env.sh"

# --- gloo headers -------------------------------------------------------------------------------
# Only headers are needed: the gloo code itself is inside libtorch_cpu. dist/build.rs looks in
# $NAS_GLOO_INCLUDE, then .deps/gloo/usr/include, then /usr/include.
gloo="$root/.deps/gloo"
if [[ -n "${NAS_GLOO_INCLUDE:-}" && -f "$NAS_GLOO_INCLUDE/gloo/algorithm.h" ]]; then
    step "gloo headers: using \$NAS_GLOO_INCLUDE=$NAS_GLOO_INCLUDE"
elif [[ -f "$gloo/usr/include/gloo/algorithm.h" ]]; then
    step "gloo headers: already in $gloo"
elif [[ -f /usr/include/gloo/algorithm.h ]]; then
    step "gloo headers: using the installed /usr/include/gloo"
else
    step "gloo headers: fetching Debian's libgloo-dev into $gloo"
    (
        gloo_work=$(mktemp -d)
        trap 'rm -rf "$gloo_work"' EXIT
        (cd "$gloo_work" && apt-get download libgloo-dev >/dev/null 2>&1) || {
            # apt's package lists may be missing on a fresh machine; refreshing them needs root.
            if [[ $(id -u) -eq 0 ]]; then
                apt-get update -qq >/dev/null
                (cd "$gloo_work" && apt-get download libgloo-dev >/dev/null 2>&1)
            else
                echo "error: apt-get download libgloo-dev failed; run 'sudo apt-get update' and retry" >&2
                exit 1
            fi
        }
        dpkg-deb -x "$gloo_work"/libgloo-dev_*.deb "$gloo_work/unpacked"
        rm -rf "$gloo.tmp"
        mkdir -p "$gloo.tmp/usr"
        cp -r "$gloo_work/unpacked/usr/include" "$gloo.tmp/usr/include"
        rm -rf "$gloo"
        mv "$gloo.tmp" "$gloo"
    )
fi

# --- Fashion-MNIST ----------------------------------------------------------------------------
data="$root/data/fashion-mnist"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have_all() { for f in "${files[@]}"; do [[ -s "$1/$f" ]] || return 1; done; }
if have_all "$data"; then
    step "data: Fashion-MNIST already in $data"
elif have_all /usr/share/datasets/fashion-mnist; then
    step "data: linking the installed Fashion-MNIST into $data"
    mkdir -p "$data"
    for f in "${files[@]}"; do ln -sf "/usr/share/datasets/fashion-mnist/$f" "$data/$f"; done
else
    step "data: fetching Debian's dataset-fashion-mnist into $data"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null 2>&1) || {
        # apt's package lists may be missing on a fresh machine; refreshing them needs root.
        if [[ $(id -u) -eq 0 ]]; then
            apt-get update -qq >/dev/null
            (cd "$work" && apt-get download dataset-fashion-mnist >/dev/null)
        else
            echo "error: apt-get download dataset-fashion-mnist failed; run 'sudo apt-get update' and retry" >&2
            exit 1
        fi
    }
    dpkg-deb -x "$work"/dataset-fashion-mnist_*.deb "$work/unpacked"
    mkdir -p "$data"
    for f in "${files[@]}"; do cp "$work/unpacked/usr/share/datasets/fashion-mnist/$f" "$data/$f"; done
fi

# --- build --------------------------------------------------------------------------------------
step "build: cargo build --release --workspace"
cargo build --release --workspace --quiet
echo
echo "ready: $root/target/release/nas (plugins beside it), data in $root/data"
