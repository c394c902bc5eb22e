#!/usr/bin/env bash
# Load benchmark of `flow serve`: wrk against POST /score of a one-llm-node flow, served by the
# release binary, with the loopback mock LLM answering after a fixed latency. Prints requests/s,
# p50/p99 latency and the flow process's CPU per request at each connection count, next to the
# ideal (connections / latency).
#
#   bench/serve.sh [DURATION_SECONDS] [LATENCY_MS] [CONNECTIONS...]   (defaults: 20 s, 100 ms, 64 256)
#
# Needs cargo, wrk (apt-get install wrk) and curl. Everything runs on this machine's cores: wrk,
# flow and the mock share them.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20}
LATENCY=${2:-100}
shift $(( $# > 2 ? 2 : $# ))
CONNS=("$@")
[ ${#CONNS[@]} -eq 0 ] && CONNS=(64 256)
MOCK_PORT=${MOCK_PORT:-8091}
PORT=${PORT:-8092}
TARGET=${CARGO_TARGET_DIR:-target}
WORK=$(mktemp -d)
trap 'kill ${FLOW_PID:-0} ${MOCK_PID:-0} 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 2; }
echo "building flow (release) and the mock..."
cargo build --release --quiet --bin flow
cargo bench --bench batch --no-run --quiet 2>/dev/null
BENCH=$(ls -t "$TARGET"/release/deps/batch-* | grep -v '\.d$' | head -1)
FLOW=$(realpath "$TARGET/release/flow")

"$BENCH" --serve "$MOCK_PORT" --latency-ms "$LATENCY" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!

mkdir -p "$WORK/bench"
cat > "$WORK/bench/flow.dag.yaml" <<'YAML'
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: '${ask.output}'}
nodes:
- name: ask
  type: llm
  source: {type: code, path: ask.jinja2}
  inputs: {model: gpt-4o-mini, question: '${inputs.question}'}
  connection: open_ai_connection
  api: chat
YAML
printf 'system:\nAnswer briefly.\nuser:\n{{question}}\n' > "$WORK/bench/ask.jinja2"
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"question": "What is the capital of France?"}'
wrk.headers["Content-Type"] = "application/json"
LUA

(cd "$WORK" && OPEN_AI_CONNECTION_API_KEY=sk-bench OPEN_AI_CONNECTION_API_BASE="http://127.0.0.1:$MOCK_PORT/v1" \
  exec "$FLOW" serve bench --port "$PORT" --log off --concurrency 4096 2> "$WORK/serve.log") &
FLOW_PID=$!
# Wait on /ready (and on the mock), no fixed sleep.
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$PORT/ready" > /dev/null && \
    curl -s -o /dev/null "http://127.0.0.1:$MOCK_PORT/v1/models" && break
  sleep 0.05
done
curl -sf "http://127.0.0.1:$PORT/ready" > /dev/null || { cat "$WORK/serve.log"; exit 1; }
curl -sf -X POST "http://127.0.0.1:$PORT/score" -H 'content-type: application/json' \
  -d '{"question": "warm-up"}' > /dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$FLOW_PID/stat"; }
HZ=$(getconf CLK_TCK)
echo "flow serve (pid $FLOW_PID) against the mock with ${LATENCY} ms latency, ${DURATION} s per run, $(nproc) cores"
echo
echo "| connections | requests/s | ideal (conn / latency) | % of ideal | p50 | p99 | non-2xx | CPU per request (flow) |"
echo "|---|---|---|---|---|---|---|---|"
for C in "${CONNS[@]}"; do
  wrk -t2 -c"$C" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/score" > /dev/null   # warm-up
  before=$(cpu_ticks)
  wrk -t2 -c"$C" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$PORT/score" > "$WORK/wrk-$C.txt"
  after=$(cpu_ticks)
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/wrk-$C.txt")
  total=$(awk '/requests in/ {print $1}' "$WORK/wrk-$C.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/wrk-$C.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/wrk-$C.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk-$C.txt")
  ideal=$(awk -v c="$C" -v l="$LATENCY" 'BEGIN {printf "%.0f", c * 1000 / l}')
  pct=$(awk -v r="$rps" -v i="$ideal" 'BEGIN {printf "%.0f%%", 100 * r / i}')
  cpu_us=$(awk -v a="$after" -v b="$before" -v hz="$HZ" -v n="$total" 'BEGIN {printf "%.0f µs", (a - b) / hz / n * 1e6}')
  echo "| $C | $rps | $ideal | $pct | $p50 | $p99 | ${non2xx:-0} | $cpu_us |"
done
echo
RSS=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$FLOW_PID/status")
echo "flow serve peak RSS: $RSS"
