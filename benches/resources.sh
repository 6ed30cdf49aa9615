#!/usr/bin/env bash
# Resource API benchmark: `stigmer apply` of 1,000 agents in one file (throughput),
# `stigmer get agents` with 10,000 stored agents (latency), then `apply` of 1,000 agents again
# with a 10 MB agent stored (a big resource must not slow the others). Medians of RUNS runs.
#
#   benches/resources.sh            # RUNS=5 by default; builds the release binary first
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup
RUNS=${RUNS:-5}
cargo build --release --locked -p stigmer >&2
BIN=$PWD/target/release/stigmer

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }

home=$(mktemp -d)
trap 'STIGMER_HOME=$home "$BIN" server stop >/dev/null 2>&1 || true; rm -rf "$home"' EXIT
printf 'server:\n  port: 0\ntemporal:\n  port: 0\n  ui: false\n' > "$home/config.yaml"
export STIGMER_HOME=$home
"$BIN" server start >/dev/null 2>&1

# batch N: 1,000 agents named a<N>-0 … a<N>-999 in one multi-document file.
make_batch() {
    python3 - "$1" "$2" <<'PY'
import sys
batch, path = sys.argv[1], sys.argv[2]
with open(path, "w") as out:
    for i in range(1000):
        out.write(f"""---
apiVersion: agentic.stigmer.ai/v1
kind: Agent
metadata:
  name: a{batch}-{i}
  labels: {{batch: "{batch}"}}
spec:
  description: Benchmark agent {i}
  instructions: |
    You are agent {i} of batch {batch}. Answer briefly.
  model: {{provider: ollama, name: qwen2.5-coder:7b, temperature: 0.2}}
  tools: [write_todos, ls, read_file]
""")
PY
}

apply_ms=()
for run in $(seq "$RUNS"); do
    make_batch "r$run" "$home/batch.yaml"
    t0=$(now_ms); "$BIN" apply -f "$home/batch.yaml" >/dev/null; t1=$(now_ms)
    apply_ms+=($((t1 - t0)))
done
# Top the store up to 10,000 agents.
stored=$((RUNS * 1000)); batch=0
while [ "$stored" -lt 10000 ]; do
    make_batch "fill$batch" "$home/batch.yaml"; "$BIN" apply -f "$home/batch.yaml" >/dev/null
    stored=$((stored + 1000)); batch=$((batch + 1))
done
count=$("$BIN" get agents -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
get_table_ms=(); get_json_ms=(); get_one_ms=()
for run in $(seq "$RUNS"); do
    t0=$(now_ms); "$BIN" get agents >/dev/null; t1=$(now_ms); get_table_ms+=($((t1 - t0)))
    t0=$(now_ms); "$BIN" get agents -o json >/dev/null; t1=$(now_ms); get_json_ms+=($((t1 - t0)))
    t0=$(now_ms); "$BIN" get agent ar1-500 >/dev/null; t1=$(now_ms); get_one_ms+=($((t1 - t0)))
done
# A 10 MB agent stored (named to sort among the others): the same applies again.
python3 - "$home/big.yaml" <<'PY'
import sys
with open(sys.argv[1], "w") as out:
    out.write("apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: ar1-big\n"
              "spec:\n  instructions: " + "x" * 10_000_000 + "\n")
PY
"$BIN" apply -f "$home/big.yaml" >/dev/null
apply_big_ms=()
for run in $(seq "$RUNS"); do
    make_batch "b$run" "$home/batch.yaml"
    t0=$(now_ms); "$BIN" apply -f "$home/batch.yaml" >/dev/null; t1=$(now_ms)
    apply_big_ms+=($((t1 - t0)))
done
apply_median=$(printf '%s\n' "${apply_ms[@]}" | median)
printf 'runs: %s, agents stored for get: %s\n' "$RUNS" "$count"
printf 'apply 1,000 agents, one file (ms, median):   %s  (%s agents/s)\n' "$apply_median" "$(awk "BEGIN {printf \"%.0f\", 1000000/$apply_median}")"
printf 'get agents, 10,000 stored, table (ms, med.): %s\n' "$(printf '%s\n' "${get_table_ms[@]}" | median)"
printf 'get agents, 10,000 stored, json (ms, med.):  %s\n' "$(printf '%s\n' "${get_json_ms[@]}" | median)"
printf 'get agent NAME, 10,000 stored (ms, median):  %s\n' "$(printf '%s\n' "${get_one_ms[@]}" | median)"
printf 'apply 1,000 agents, a 10 MB agent stored (ms, median): %s\n' "$(printf '%s\n' "${apply_big_ms[@]}" | median)"
