#!/usr/bin/env bash
# Container mode benchmark: agent-runner image size, image build time (cold: no such image;
# warm: built again with the engine's cache), container start → polling (as Temporal reports
# it), idle container RSS. Medians of RUNS runs, release binary.
#
#   benches/container.sh            # RUNS=5 by default; starts Podman's service if no engine answers
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup
. scripts/container-engine
RUNS=${RUNS:-5}
cargo build --release --locked -p stigmer >&2
BIN=$PWD/target/release/stigmer
SOCKET=${DOCKER_HOST#unix://}
IMAGE="stigmer-agent-runner:$("$BIN" --version | awk '{print $2}')"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%3N; }
api() { curl -sf --unix-socket "$SOCKET" "$@"; }

home=$(mktemp -d)
cleanup() {
    STIGMER_HOME=$home "$BIN" server stop >/dev/null 2>&1 || true
    rm -rf "$home"
    [ -n "${STIGMER_PODMAN_PID:-}" ] && kill "$STIGMER_PODMAN_PID" 2>/dev/null || true
}
trap cleanup EXIT
cat > "$home/config.yaml" <<'YAML'
server:
  port: 0
temporal:
  port: 0
  ui: false
agent_runner:
  mode: container
YAML
export STIGMER_HOME=$home

cold=(); warm=(); ready=(); rss=(); size=()
for run in $(seq "$RUNS"); do
    api -X DELETE "http://engine/images/$IMAGE?force=true" >/dev/null || true
    t0=$(now_ms); "$BIN" image build >/dev/null 2>&1; t1=$(now_ms); cold+=($((t1 - t0)))
    t0=$(now_ms); "$BIN" image build >/dev/null 2>&1; t1=$(now_ms); warm+=($((t1 - t0)))
    size+=($(api "http://engine/images/$IMAGE/json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Size"])'))
    mkdir -p "$home/logs"; : > "$home/logs/daemon.log"
    "$BIN" server start >/dev/null 2>&1
    sleep 2
    pid=$("$BIN" server status --json | python3 -c "import json,sys; s=json.load(sys.stdin); print([c for c in s['components'] if c['name']=='agent-runner'][0]['pid'])")
    rss+=($(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"))
    ready+=($(python3 -c "
import json
for line in open('$home/logs/daemon.log'):
    r = json.loads(line)
    if r.get('message') == 'Child ready.' and r.get('unit') == 'agent-runner':
        print(r['ready_ms']); break
"))
    "$BIN" server stop >/dev/null 2>&1
done

binary_mb=$(awk -v b="$(stat -c %s "$BIN")" 'BEGIN {printf "%.1f", b/1000000}')
echo "container mode, $RUNS runs (medians), engine $DOCKER_HOST"
echo "  image size:                    $(printf '%s\n' "${size[@]}" | median | awk '{printf "%.1f MB", $1/1000000}') (binary $binary_mb MB)"
echo "  image build, cold:             $(printf '%s\n' "${cold[@]}" | median) ms (whole \`stigmer image build\` command)"
echo "  image build, warm cache:       $(printf '%s\n' "${warm[@]}" | median) ms"
echo "  container start → polling:     $(printf '%s\n' "${ready[@]}" | median) ms"
echo "  idle RSS, agent-runner container: $(printf '%s\n' "${rss[@]}" | median) kB"
