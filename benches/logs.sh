#!/usr/bin/env bash
# Logs benchmark: `stigmer server logs --tail 100` over three SIZE_MB component logs, and over
# three 2 MB ones (the cost must not depend on the size of the files); then the full
# time-ordered merge of the same three files (`-n all`, JSON and human format) against
# `LC_ALL=C sort -m` merging the same already-sorted files, in the same run. Medians of RUNS
# runs, each the whole command (process start included), output to /dev/null, files in the
# page cache (a warm-up run first).
#
#   benches/logs.sh                     # RUNS=5 SIZE_MB=200; builds the release binary first
#   RUNS=9 SIZE_MB=50 benches/logs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup
RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-200}
cargo build --release --locked -p stigmer >&2
cargo build --release --locked -p stigmer-logs --example generate_logs >&2
BIN=$PWD/target/release/stigmer
GENERATE=$PWD/target/release/examples/generate_logs

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
# Milliseconds (one decimal) that "$@" takes, its output discarded.
time_ms() {
    local t0 t1
    t0=$(date +%s%N); "$@" > /dev/null; t1=$(date +%s%N)
    awk -v d=$((t1 - t0)) 'BEGIN {printf "%.1f\n", d / 1e6}'
}
# The median of RUNS timings of "$@", after one warm-up run.
measure() {
    "$@" > /dev/null
    for _ in $(seq "$RUNS"); do time_ms "$@"; done | median
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Three components writing at different rates with many equal times, one JSON object per line
# (the format the daemon writes), each file in time order.
"$GENERATE" "$work/big/logs" "$SIZE_MB" daemon server agent-runner
"$GENERATE" "$work/small/logs" 2 daemon server agent-runner
big=("$work/big/logs/daemon.log" "$work/big/logs/server.log" "$work/big/logs/agent-runner.log")
lines=$(cat "${big[@]}" | wc -l)
bytes=$(cat "${big[@]}" | wc -c)

logs_big() { STIGMER_HOME=$work/big "$BIN" server logs --no-color "$@"; }
logs_small() { STIGMER_HOME=$work/small "$BIN" server logs --no-color "$@"; }
sort_merge() { LC_ALL=C sort -m "${big[@]}"; }

# The merge is complete and in time order (checked once, outside the timings).
merged=$(logs_big -n all --json daemon server agent-runner \
    | LC_ALL=C awk -F'"' '$4 < previous {print "error: out of order at line " NR > "/dev/stderr"; exit 1} {previous = $4} END {print NR}')
[ "$merged" -eq "$lines" ] || { echo "error: merged $merged lines, the files hold $lines" >&2; exit 1; }
[ "$(logs_big -n 100 | wc -l)" -eq 100 ] || { echo "error: --tail 100 did not print 100 lines" >&2; exit 1; }

tail_big=$(measure logs_big -n 100)
tail_big_json=$(measure logs_big -n 100 --json)
tail_small=$(measure logs_small -n 100)
tail_filtered=$(measure logs_big -n 100 --level error)
merge_json=$(measure logs_big -n all --json)
merge_human=$(measure logs_big -n all)
merge_sort=$(measure sort_merge)
rate() { awk -v b="$bytes" -v ms="$1" 'BEGIN {printf "%.0f MB/s", b / 1048576 / (ms / 1000)}'; }

printf 'runs: %s; three files of %s MB, %s lines, %s MB in all\n' "$RUNS" "$SIZE_MB" "$lines" "$((bytes / 1048576))"
printf 'server logs --tail 100, 3 x %s MB (ms, median):          %s\n' "$SIZE_MB" "$tail_big"
printf 'server logs --tail 100 --json, 3 x %s MB (ms, median):   %s\n' "$SIZE_MB" "$tail_big_json"
printf 'server logs --tail 100, 3 x 2 MB (ms, median):            %s\n' "$tail_small"
printf 'server logs --tail 100 --level error, 3 x %s MB (ms):     %s\n' "$SIZE_MB" "$tail_filtered"
printf 'server logs -n all --json, full merge (ms, median):       %s  (%s)\n' "$merge_json" "$(rate "$merge_json")"
printf 'server logs -n all, human format (ms, median):            %s  (%s)\n' "$merge_human" "$(rate "$merge_human")"
printf 'LC_ALL=C sort -m of the same files (ms, median):          %s  (%s)\n' "$merge_sort" "$(rate "$merge_sort")"
