#!/usr/bin/env bash
# A Flower deployment of an experiment on this machine, secure by default: a CA, the SuperLink's
# TLS certificate and one authentication key per hospital are made; the SuperLink starts with
# TLS and SuperNode authentication; each hospital's key is registered and its SuperNode started
# with its `partition-id`; the app runs (`flwr run --stream`); everything started is stopped by
# process id, also on error or Ctrl-C.
#
#   flower/launch.sh <experiment.toml> [--out DIR] [--work DIR] [--port 9200] [--only K=V] [--negative-checks]
#   flower/launch.sh --app <other Flower app> --clients N [--out DIR] [--work DIR] [--port 9200]
#
# --negative-checks: before the run, a SuperNode with an unregistered key and one without TLS
# try to join; each must be refused (the script fails otherwise), and is stopped by its pid.
#
# Needs flwr==1.42.0, torch==2.13.0 and the fedsentry wheel (scripts/python-wheel) in the
# Python on PATH (or $FLOWER_PYTHON's folder), and openssl and ssh-keygen. The number of
# SuperNodes is the experiment's `federation.clients`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exp="" out="" work="" port=9200 only="" negative=0 app="$here" clients=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --only) only="${only:+$only,}$2"; shift 2 ;;
        --negative-checks) negative=1; shift ;;
        --app) app="$(realpath "$2")"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        -*) echo "launch.sh: unknown option $1" >&2; exit 2 ;;
        *) exp="$1"; shift ;;
    esac
done
if [ -z "$exp" ] && [ -z "$clients" ]; then
    echo "usage: launch.sh <experiment.toml> [--out DIR] [--work DIR] [--port N] [--only K=V] [--negative-checks]" >&2
    echo "       launch.sh --app DIR --clients N [--out DIR] [--work DIR] [--port N]" >&2
    exit 2
fi
if [ -n "$exp" ]; then
    [ -f "$exp" ] || { echo "launch.sh: $exp: no such experiment file" >&2; exit 2; }
    exp="$(realpath "$exp")"
fi
if [ -n "${FLOWER_PYTHON:-}" ]; then
    # Flower starts its helpers (flower-superexec, ...) by name.
    export PATH="$(dirname "$FLOWER_PYTHON"):$PATH"
fi
bin=""
py="${FLOWER_PYTHON:-python3}"
work="$(realpath -m "${work:-$(mktemp -d)}")"
out="$(realpath -m "${out:-$work/out}")"
mkdir -p "$work/keys" "$work/logs" "$out"
[ -n "$clients" ] || clients="$("$py" -c "import fedsentry,sys; print(fedsentry.Experiment(sys.argv[1], only=[o for o in sys.argv[2].split(',') if o], out=sys.argv[3]).num_clients)" "$exp" "$only" "$work/cache" 2>/dev/null)" ||
    { echo "launch.sh: cannot load $exp with the fedsentry package of $py" >&2; exit 2; }

pids=()
stop_all() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    printf '%s\n' "${pids[@]}" > "$work/stopped.pids"
}
trap stop_all EXIT INT TERM

# Certificates: a CA and the SuperLink's certificate for 127.0.0.1 / localhost.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/keys/ca.key" -out "$work/keys/ca.crt" \
    -days 2 -subj "/CN=fedsentry deployment CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/keys/server.key" -out "$work/keys/server.csr" \
    -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$work/keys/san.ext"
openssl x509 -req -in "$work/keys/server.csr" -CA "$work/keys/ca.crt" -CAkey "$work/keys/ca.key" \
    -CAcreateserial -out "$work/keys/server.pem" -days 2 -extfile "$work/keys/san.ext" 2>/dev/null
for i in $(seq 0 $((clients - 1))); do
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "" -f "$work/keys/hospital_$i"
done

# The CLI's connection to this SuperLink (TLS, our CA).
export FLWR_HOME="$work/flwr"
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "fedsentry"

[superlink.fedsentry]
address = "127.0.0.1:$port"
root-certificates = "$work/keys/ca.crt"
TOML

"${bin}flower-superlink" --ssl-ca-certfile "$work/keys/ca.crt" --ssl-certfile "$work/keys/server.pem" \
    --ssl-keyfile "$work/keys/server.key" --enable-supernode-auth --disable-runtime-dependency-installation \
    --port "$port" --database "$work/superlink.db" > "$work/logs/superlink.log" 2>&1 &
pids+=($!)
echo "$!" > "$work/superlink.pid"
for _ in $(seq 1 100); do
    kill -0 "${pids[0]}" 2>/dev/null || { echo "launch.sh: the SuperLink stopped:" >&2; tail -5 "$work/logs/superlink.log" >&2; exit 1; }
    "${bin}flwr" supernode list fedsentry > /dev/null 2>&1 && break
    sleep 0.3
done

for i in $(seq 0 $((clients - 1))); do
    "${bin}flwr" supernode register "$work/keys/hospital_$i.pub" fedsentry --name "hospital-$i" \
        > "$work/logs/register_$i.log" 2>&1 || { cat "$work/logs/register_$i.log" >&2; exit 1; }
    "${bin}flower-supernode" --superlink "127.0.0.1:$port" --root-certificates "$work/keys/ca.crt" \
        --auth-supernode-private-key "$work/keys/hospital_$i" \
        --node-config "partition-id=$i num-partitions=$clients" --port $((port + 10 + i)) \
        > "$work/logs/supernode_$i.log" 2>&1 &
    pids+=($!)
    echo "$!" > "$work/supernode_$i.pid"
done

# A node that must not get in: it runs until Flower gives up on it (or 60 s), stopped by pid.
refused() {
    local name="$1"; shift
    "${bin}flower-supernode" --superlink "127.0.0.1:$port" --node-config "partition-id=0 num-partitions=$clients" \
        --max-retries 2 --max-wait-time 10 "$@" > "$work/logs/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 60 ]; do sleep 1; waited=$((waited + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"; wait "$pid" 2>/dev/null || true
        echo "negative check FAILED: $name was still connected after 60 s (log: $work/logs/$name.log)" >&2
        return 1
    fi
    local rc=0
    wait "$pid" || rc=$?
    if [ "$rc" = 0 ]; then
        echo "negative check FAILED: $name exited 0 (log: $work/logs/$name.log)" >&2
        return 1
    fi
    echo "negative check: $name refused (exit $rc): $(grep -m1 -E 'Failed|error|Error|refused|SSL' "$work/logs/$name.log" | tr -d '\033' | cut -c1-160)"
}
if [ "$negative" = 1 ]; then
    ssh-keygen -q -t ecdsa -b 384 -N "" -C "" -f "$work/keys/unregistered"
    refused unregistered_key --root-certificates "$work/keys/ca.crt" \
        --auth-supernode-private-key "$work/keys/unregistered" --port $((port + 8))
    refused without_tls --insecure --port $((port + 9))
fi

run_config="out=\"$out\""
[ -z "$exp" ] || run_config="experiment=\"$exp\" only=\"$only\" $run_config"
"${bin}flwr" run "$app" fedsentry --stream --run-config "$run_config" 2>&1 | tee "$work/logs/run.log"
if [ -n "$exp" ] && [ ! -f "$out/summary.json" ]; then
    echo "launch.sh: the run wrote no $out/summary.json (logs in $work/logs)" >&2
    exit 1
fi
echo "flower deployment: $out (logs and keys in $work)"
