#!/usr/bin/env bash
# Lifecycle benchmark: `server start` → ready (managed Temporal), `server stop`, runner process
# start → polling (as Temporal reports it), idle RSS, stripped binary size. Medians of RUNS runs.
#
#   benches/lifecycle.sh            # RUNS=7 by default; builds the release binary first
#   RUNS=15 benches/lifecycle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup
RUNS=${RUNS:-7}
cargo build --release --locked -p stigmer >&2
BIN=$PWD/target/release/stigmer

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

home=$(mktemp -d)
trap 'STIGMER_HOME=$home "$BIN" server stop >/dev/null 2>&1 || true; rm -rf "$home"' EXIT
cat > "$home/config.yaml" <<'YAML'
server:
  port: 0
temporal:
  port: 0
  ui_port: 0
YAML
export STIGMER_HOME=$home

start_ms=(); stop_ms=(); agent_ready=(); workflow_ready=(); temporal_ready=()
rss_daemon=(); rss_agent=(); rss_workflow=(); rss_temporal=()
for run in $(seq "$RUNS"); do
    mkdir -p "$home/logs"; : > "$home/logs/daemon.log"
    t0=$(now_ms); "$BIN" server start >/dev/null 2>&1; t1=$(now_ms)
    start_ms+=($((t1 - t0)))
    # Idle: let the stack settle for a moment before reading memory.
    sleep 2
    status=$("$BIN" server status --json)
    pid() { python3 -c "import json,sys; s=json.load(sys.stdin); print([c for c in s['components'] if c['name']=='$1'][0]['pid'])" <<<"$status"; }
    rss_daemon+=($(rss_kb "$(pid server)")); rss_agent+=($(rss_kb "$(pid agent-runner)"))
    rss_workflow+=($(rss_kb "$(pid workflow-runner)")); rss_temporal+=($(rss_kb "$(pid temporal)"))
    ready() { python3 -c "
import json
for line in open('$home/logs/daemon.log'):
    r = json.loads(line)
    if r.get('message') == 'Child ready.' and r.get('unit') == '$1':
        print(r['ready_ms']); break
"; }
    agent_ready+=($(ready agent-runner)); workflow_ready+=($(ready workflow-runner)); temporal_ready+=($(ready temporal))
    t0=$(now_ms); "$BIN" server stop >/dev/null 2>&1; t1=$(now_ms)
    stop_ms+=($((t1 - t0)))
done

size_bytes=$(stat -c %s "$BIN")
printf 'runs: %s\n' "$RUNS"
printf 'server start -> ready (ms, median):          %s\n' "$(printf '%s\n' "${start_ms[@]}" | median)"
printf 'server stop (ms, median):                    %s\n' "$(printf '%s\n' "${stop_ms[@]}" | median)"
printf 'temporal spawn -> healthy (ms, median):      %s\n' "$(printf '%s\n' "${temporal_ready[@]}" | median)"
printf 'agent-runner spawn -> polling (ms, median):  %s\n' "$(printf '%s\n' "${agent_ready[@]}" | median)"
printf 'workflow-runner spawn -> polling (ms, med.): %s\n' "$(printf '%s\n' "${workflow_ready[@]}" | median)"
printf 'idle RSS daemon (MB, median):                %.1f\n' "$(printf '%s\n' "${rss_daemon[@]}" | median | awk '{print $1/1024}')"
printf 'idle RSS agent-runner (MB, median):          %.1f\n' "$(printf '%s\n' "${rss_agent[@]}" | median | awk '{print $1/1024}')"
printf 'idle RSS workflow-runner (MB, median):       %.1f\n' "$(printf '%s\n' "${rss_workflow[@]}" | median | awk '{print $1/1024}')"
printf 'idle RSS temporal dev server (MB, median):   %.1f\n' "$(printf '%s\n' "${rss_temporal[@]}" | median | awk '{print $1/1024}')"
printf 'stripped release binary (MB):                %.1f\n' "$(awk "BEGIN {print $size_bytes/1048576}")"
