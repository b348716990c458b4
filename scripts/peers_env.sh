# Sourced by scripts/bench after env.sh: a cached virtualenv for the Flower peers of the federated
# benchmark (flwr 1.41.0 + Ray at the versions the peers pin), layered on the torch virtualenv
# through a .pth file so that both sides use the very same torch install.
peers_dir="${FEDSENTRY_PEERS:-$here/../shared/peers}"
FEDSENTRY_PEERS_VENV="${FEDSENTRY_PEERS_VENV:-$(dirname "$FEDSENTRY_VENV")/peers-flwr-1.41.0}"

if [ -f "$peers_dir/requirements-flwr.txt" ] &&
    ! "$FEDSENTRY_PEERS_VENV/bin/python" -c "import torch, flwr, ray" 2>/dev/null; then
    echo "fedsentry: installing the Flower peers' packages into $FEDSENTRY_PEERS_VENV (first run only)" >&2
    python3 -m venv "$FEDSENTRY_PEERS_VENV"
    site="$("$FEDSENTRY_PEERS_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')"
    "$FEDSENTRY_VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])' >"$site/fedsentry-torch.pth"
    "$FEDSENTRY_PEERS_VENV/bin/python" -m pip install --quiet -r "$peers_dir/requirements-flwr.txt"
fi
export FEDSENTRY_PEERS_PYTHON="$FEDSENTRY_PEERS_VENV/bin/python"
