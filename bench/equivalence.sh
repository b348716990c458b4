#!/usr/bin/env bash
# Behaviour check for refactors: run the demo and the two configs of bench/equivalence/ with a
# binary, then compare every results.csv and every summary.json metric with an earlier run.
#
#   bench/equivalence.sh run  BINARY OUT_DIR      # e.g. a build of the commit before the change
#   bench/equivalence.sh diff OUT_BEFORE OUT_AFTER
#
# `diff` ignores only what is meant to change between runs: wall-clock times. Everything else must be byte-identical (one machine, same
# kernels), and the script exits non-zero on the first difference.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
run)
    bin="$2"; out="$3"; mkdir -p "$out"
    "$bin" demo --out "$out/demo"
    "$bin" run "$here/equivalence/federated_robust.toml" --out "$out/federated_robust"
    "$bin" run "$here/equivalence/evasion.toml" --out "$out/evasion"
    ;;
diff)
    a="$2"; b="$3"
    python3 - "$a" "$b" <<'PY'
import json, pathlib, sys
a, b = map(pathlib.Path, sys.argv[1:3])
import csv, io
def volatile(key):
    # Wall-clock timings; everything else must match.
    return key in ("seconds", "elapsed_s", "train_s") or key.endswith(("_seconds", "_ms", "ms_per_batch"))
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items() if not volatile(k)}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
files = sorted(p.relative_to(a) for p in a.rglob("*") if p.name in ("results.csv", "summary.json", "evasion.csv", "history.csv"))
if not files:
    sys.exit(f"no results under {a}")
bad = 0
for rel in files:
    pa, pb = a / rel, b / rel
    if not pb.exists():
        print(f"missing after: {rel}"); bad += 1; continue
    if rel.suffix == ".json":
        same = strip(json.loads(pa.read_text())) == strip(json.loads(pb.read_text()))
    else:
        def rows(p):
            r = list(csv.reader(io.StringIO(p.read_text())))
            keep = [i for i, k in enumerate(r[0]) if not volatile(k)] if r else []
            return [[row[i] for i in keep if i < len(row)] for row in r]
        same = rows(pa) == rows(pb)
    if not same:
        print(f"differs: {rel}"); bad += 1
print(f"{len(files)} files compared, {bad} differ")
sys.exit(1 if bad else 0)
PY
    ;;
*) echo "usage: $0 run BINARY OUT | diff OUT_BEFORE OUT_AFTER" >&2; exit 2 ;;
esac
