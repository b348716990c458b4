#!/usr/bin/env bash
# A virtualenv for the Flower deployment, cached outside the repository
# ($FEDSENTRY_FLOWER_VENV, default ~/.cache/fedsentry/flower-1.42.0): flwr==1.42.0, the pinned
# torch (shared with scripts/env.sh's virtualenv, not downloaded twice) and the fedsentry wheel
# built from this checkout. Prints the virtualenv's python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/scripts/env.sh"
torch_python="$FEDSENTRY_VENV/bin/python"
venv="${FEDSENTRY_FLOWER_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsentry/flower-1.42.0}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
site="$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
"$torch_python" -c 'import site; print(site.getsitepackages()[0])' > "$site/fedsentry-torch.pth"
if ! "$venv/bin/python" -c 'import flwr, sys; sys.exit(flwr.__version__ != "1.42.0")' 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet "flwr==1.42.0" >&2
fi
wheel="$("$here/scripts/python-wheel" | tail -1)"
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel" >&2
echo "$venv/bin/python"
