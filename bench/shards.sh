#!/usr/bin/env bash
# Shard benchmark (docs/performance.md): one rate-limited loopback mock (50 ms per request,
# RATE requests/s, bucket of 20, x-ratelimit-* headers and 429s beyond), and the same dataset run
#   a) by one `flow run --concurrency C`, and
#   b) by four `flow run --shard K/4 --concurrency C/4` processes at once, then `flow runs merge`.
# Prints each setup's lines/s against the endpoint's limit and checks that the merged run's
# outputs and inputs equal the one-process run's, byte for byte.
#
#   bench/shards.sh [LINES] [RATE] [C]      (defaults 4000, 200, 64; builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-4000}
rate=${2:-200}
conc=${3:-64}
source bench/mock-flow.sh
work=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/flow-shards.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=18095
"$mock" --serve "$port" --latency-ms 50 --rate "$rate" >/dev/null 2>&1 &
pids+=($!)
sleep 1
mock_flow_project "$work" "$lines"
export OPEN_AI_CONNECTION_API_KEY=k OPEN_AI_CONNECTION_API_BASE="http://127.0.0.1:$port/v1" NO_COLOR=1
report() {
  python3 -c "
lines, secs, rate = $lines, $2, $rate
print(f'| $1 | {lines / secs:,.0f} lines/s | {100 * lines / secs / rate:.0f}% of the limit ({rate}/s) | {secs:.2f} s |')"
}
echo "| setup ($lines lines, mock at 50 ms, $rate requests/s) | throughput | vs the endpoint's limit | wall |"
echo "|---|---|---|---|"
cd "$work"
start=$(date +%s.%N)
"$flow" run bench --data d.jsonl --concurrency "$conc" --no-cache --name one >/dev/null 2>&1
end=$(date +%s.%N)
report "one process, --concurrency $conc" "$(python3 -c "print($end - $start)")"
sleep 2  # let the mock's bucket fill again
start=$(date +%s.%N)
shard_pids=()
for k in 1 2 3 4; do
  "$flow" run bench --data d.jsonl --concurrency $((conc / 4)) --no-cache --shard "$k/4" --name s >/dev/null 2>"$work/s$k.err" &
  shard_pids+=($!)
done
for k in 1 2 3 4; do wait "${shard_pids[$((k - 1))]}" || { cat "$work/s$k.err"; exit 1; }; done
"$flow" runs merge s-shard-1-of-4 s-shard-2-of-4 s-shard-3-of-4 s-shard-4-of-4 --name merged >/dev/null 2>"$work/merge.err" || { cat "$work/merge.err"; exit 1; }
end=$(date +%s.%N)
report "4 shard processes, --concurrency $((conc / 4)) each, and the merge" "$(python3 -c "print($end - $start)")"
for f in flow_outputs/output.jsonl inputs.jsonl; do
  if cmp -s ".flow/runs/one/$f" ".flow/runs/merged/$f"; then
    echo "merged $f: identical to the one-process run's ($(wc -l < ".flow/runs/one/$f") lines)"
  else
    echo "merged $f: DIFFERS from the one-process run's"
    exit 1
  fi
done
