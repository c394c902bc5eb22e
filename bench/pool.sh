#!/usr/bin/env bash
# Endpoint-pool benchmark (docs/performance.md): three loopback mocks at 50 ms, each in its own
# process, behind one pooled connection (OPEN_AI_CONNECTION_POOL=m1,m2,m3), 64 lines in flight
# per member (--concurrency 192), against the same run on one mock. The ideal is
# members × in-flight / latency = 3 × 64 / 0.05 s = 3,840 lines/s.
#
#   bench/pool.sh [LINES] [REPEATS]    (defaults 20000 and 3; builds release binaries first)
#   BENCH_DIR=/mnt/x bench/pool.sh     (where the run directories go; default $TMPDIR or /tmp)
#
# The run directory has one file per node per line (promptflow's node_artifacts layout), so the
# filesystem matters: an ext4 without a journal scans recently deleted inodes on every file it
# creates (docs/performance.md). The script prints what the run directories are on.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-20000}
repeats=${2:-3}
source bench/mock-flow.sh
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/flow-pool.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in 18091 18092 18093 18094; do
  "$mock" --serve "$port" --latency-ms 50 >/dev/null 2>&1 &
  pids+=($!)
done
sleep 1
mock_flow_project "$work" "$lines"
fstype=$(findmnt -no FSTYPE -T "$work" 2>/dev/null | head -1 || echo "unknown")
source=$(findmnt -no SOURCE -T "$work" 2>/dev/null | head -1 || echo "?")
journal=""
if [[ $fstype == ext4 ]]; then
  if ls /proc/fs/jbd2 2>/dev/null | grep -q "^$(basename "$source")-"; then
    journal=" with a journal"
  else
    journal=" WITHOUT a journal"
  fi
fi
echo "run directories on: $fstype ($source)$journal, $work; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
timer=()  # GNU time, when the machine has it, for flow's CPU
[[ -x /usr/bin/time ]] && timer=(/usr/bin/time -f '%U %S' -o "$work/cpu")
run() {
  local label=$1; shift
  local start end cpu
  start=$(date +%s.%N)
  rm -f "$work/cpu"
  (cd "$work" && env "$@" NO_COLOR=1 "${timer[@]}" "$flow" run bench --data d.jsonl --concurrency 192 --no-cache >/dev/null 2>&1)
  end=$(date +%s.%N)
  cpu=$(cat "$work/cpu" 2>/dev/null || echo "? ?")
  python3 -c "
lines, secs = $lines, $end - $start
user, sys = '$cpu'.split()
print(f'| $label | {lines / secs:,.0f} lines/s | {100 * lines / secs / 3840:.0f}% of 3,840 | {secs:.2f} s | {user} s / {sys} s |')"
}
echo "| setup | throughput | vs pool ideal | wall | flow's user / system CPU |"
echo "|---|---|---|---|---|"
for _ in $(seq "$repeats"); do
run "one mock, --concurrency 192" OPEN_AI_CONNECTION_API_KEY=k OPEN_AI_CONNECTION_API_BASE=http://127.0.0.1:18091/v1
run "pool of 3 mocks, --concurrency 192" OPEN_AI_CONNECTION_POOL=m1,m2,m3 \
  M1_API_KEY=k M1_API_BASE=http://127.0.0.1:18092/v1 \
  M2_API_KEY=k M2_API_BASE=http://127.0.0.1:18093/v1 \
  M3_API_KEY=k M3_API_BASE=http://127.0.0.1:18094/v1
done
