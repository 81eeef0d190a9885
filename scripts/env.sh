# Source this file (`source scripts/env.sh`) to give cargo the libtorch that scripts/setup.sh set
# up: the user's own $LIBTORCH if set, else the project's virtualenv torch.
_nas_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${LIBTORCH:-}" ]]; then
    export PATH="$_nas_root/.venv/bin:$PATH"
    export LIBTORCH_USE_PYTORCH=1
fi
unset _nas_root
