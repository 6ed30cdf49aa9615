#!/usr/bin/env bash
# Daemon memory with 20 subscribers that never read, on a busy run: the release daemon, an
# agent whose model never answers (a listener that accepts and stays silent), 64 MiB of 128 KiB
# tool outputs appended to its execution while 20 subscriptions (each on its own connection)
# never read. Prints the daemon's RSS idle and at its peak, per run, and the median growth.
#
#   benches/subscribers.sh            # RUNS=5 by default; builds the release binary first
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup
RUNS=${RUNS:-5}
cargo build --release --locked -p stigmer >&2
cargo bench --locked -p stigmer-server --bench slow_subscribers --no-run >&2
BIN=$PWD/target/release/stigmer

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }

home=$(mktemp -d)
silent_pid=
cleanup() {
    STIGMER_HOME=$home "$BIN" server stop >/dev/null 2>&1 || true
    [ -n "$silent_pid" ] && kill "$silent_pid" 2>/dev/null || true
    rm -rf "$home"
}
trap cleanup EXIT
# An "LLM" that accepts connections and never answers.
python3 -u -c '
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1]); sys.stdout.flush()
held = []
while True:
    held.append(s.accept())
' > "$home/silent.port" &
silent_pid=$!
for _ in $(seq 100); do [ -s "$home/silent.port" ] && break; sleep 0.05; done
port=$(cat "$home/silent.port")
cat > "$home/config.yaml" <<YAML
server:
  port: 0
temporal:
  port: 0
  ui: false
llm:
  provider: openai
  model: silent
  base_url: http://127.0.0.1:$port/v1
YAML
export STIGMER_HOME=$home OPENAI_API_KEY=sk-bench
"$BIN" server start >/dev/null 2>&1
printf 'apiVersion: agentic.stigmer.ai/v1\nkind: Agent\nmetadata:\n  name: helper\nspec:\n  instructions: You help.\n' > "$home/agent.yaml"
"$BIN" apply -f "$home/agent.yaml" >/dev/null

growth=()
for run in $(seq "$RUNS"); do
    # A fresh daemon per run: an allocator keeps what it was once given.
    if [ "$run" -gt 1 ]; then "$BIN" server stop >/dev/null 2>&1; "$BIN" server start >/dev/null 2>&1; fi
    address=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server_address"])' "$home/run/state.json")
    pid=$(awk '{print $1; exit}' "$home/run/daemon.lock")
    line=$(ADDRESS=$address TOKEN=$(cat "$home/run/api-token") DAEMON_PID=$pid \
        cargo bench --locked -q -p stigmer-server --bench slow_subscribers 2>/dev/null | tail -1)
    echo "run $run: $line"
    growth+=("$(sed -n 's/.*(+\([0-9.]*\) MB).*/\1/p' <<<"$line")")
done
printf "daemon RSS growth with ${SUBSCRIBERS:-20} non-reading subscribers, 64 MiB of events (MB, median): %s\n" \
    "$(printf '%s\n' "${growth[@]}" | median)"
