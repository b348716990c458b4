# Sourced by the other scripts: makes sure the pinned PyTorch wheel is installed in a cached
# virtualenv outside the repository and exports what tch's build needs to find it.
# Override the location with FEDSENTRY_VENV.


FEDSENTRY_TORCH_VERSION="2.13.0"
# The torchvision release built against that torch: the tests write torchvision-named weight files.
FEDSENTRY_TORCHVISION_VERSION="0.28.0"
FEDSENTRY_VENV="${FEDSENTRY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/fedsentry/torch-${FEDSENTRY_TORCH_VERSION}}"

fedsentry_venv_ok() {
    [ -x "$FEDSENTRY_VENV/bin/python" ] &&
        "$FEDSENTRY_VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(0 if torch.__version__.split('+')[0] == '${FEDSENTRY_TORCH_VERSION}' and torchvision.__version__.split('+')[0] == '${FEDSENTRY_TORCHVISION_VERSION}' else 1)" 2>/dev/null
}

if ! fedsentry_venv_ok; then
    echo "fedsentry: installing torch==${FEDSENTRY_TORCH_VERSION} and torchvision==${FEDSENTRY_TORCHVISION_VERSION} into $FEDSENTRY_VENV (first run only)" >&2
    py="${PYTHON:-python3}"
    command -v "$py" >/dev/null || { echo "fedsentry: python3 is required to install the PyTorch wheel" >&2; exit 1; }
    mkdir -p "$(dirname "$FEDSENTRY_VENV")"
    "$py" -m venv "$FEDSENTRY_VENV"
    "$FEDSENTRY_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$FEDSENTRY_VENV/bin/python" -m pip install --quiet "torch==${FEDSENTRY_TORCH_VERSION}" "torchvision==${FEDSENTRY_TORCHVISION_VERSION}" numpy
    fedsentry_venv_ok || { echo "fedsentry: torch/torchvision install in $FEDSENTRY_VENV failed" >&2; exit 1; }
fi

# tch's build script asks `python` for libtorch's location when these are set; build.rs then
# records that location as the binary's rpath, so nothing needs exporting at run time.
export VIRTUAL_ENV="$FEDSENTRY_VENV"
export PATH="$FEDSENTRY_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
