#!/usr/bin/env bash
# Endpoint-pool benchmark (docs/performance.md): three loopback mocks at 50 ms, each in its own
# process, behind one pooled connection (OPEN_AI_CONNECTION_POOL=m1,m2,m3), 64 lines in flight
# per member (--concurrency 192), against the same run on one mock. The ideal is
# members × in-flight / latency = 3 × 64 / 0.05 s = 3,840 lines/s.
#
#   bench/pool.sh [LINES]        (default 20000; builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-20000}
cargo build --release --quiet
cargo bench --bench batch --no-run --quiet 2>/dev/null
target=${CARGO_TARGET_DIR:-target}
flow="$target/release/flow"
mock=$(ls -t "$target"/release/deps/batch-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in 18091 18092 18093 18094; do
  "$mock" --serve "$port" --latency-ms 50 >/dev/null 2>&1 &
  pids+=($!)
done
sleep 1
mkdir -p "$work/bench"
cat > "$work/bench/flow.dag.yaml" <<'YAML'
inputs:
  question: {type: string}
outputs:
  answer: {reference: "${ask.output}"}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  connection: open_ai_connection
  api: chat
  inputs:
    model: gpt-4o-mini
    question: ${inputs.question}
YAML
printf 'user:\n{{question}}\n' > "$work/bench/ask.jinja2"
python3 -c "
import sys
for i in range(int(sys.argv[1])): print('{\"question\": \"q %d\"}' % i)" "$lines" > "$work/d.jsonl"
run() {
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  (cd "$work" && env "$@" NO_COLOR=1 "$flow" run bench --data d.jsonl --concurrency 192 --no-cache >/dev/null 2>&1)
  end=$(date +%s.%N)
  python3 -c "
lines, secs = $lines, $end - $start
print(f'| $label | {lines / secs:,.0f} lines/s | {100 * lines / secs / 3840:.0f}% of 3,840 | {secs:.2f} s for {lines} lines |')"
}
echo "| setup | throughput | vs pool ideal | wall |"
echo "|---|---|---|---|"
run "one mock, --concurrency 192" OPEN_AI_CONNECTION_API_KEY=k OPEN_AI_CONNECTION_API_BASE=http://127.0.0.1:18091/v1
run "pool of 3 mocks, --concurrency 192" OPEN_AI_CONNECTION_POOL=m1,m2,m3 \
  M1_API_KEY=k M1_API_BASE=http://127.0.0.1:18092/v1 \
  M2_API_KEY=k M2_API_BASE=http://127.0.0.1:18093/v1 \
  M3_API_KEY=k M3_API_BASE=http://127.0.0.1:18094/v1
