#!/usr/bin/env bash
# Runs the same one-llm-node flow over the same data, against the same loopback mock LLM, with
# promptflow's `pf run create` and with `flow run`, and prints both times and their ratio.
#
#   bench/compare-promptflow.sh [LINES] [LATENCY_MS]     (defaults: 1000 lines, 50 ms)
#
# promptflow is installed into a throwaway virtualenv (PyPI must be reachable); telemetry is off.
# Nothing is installed system-wide. Needs cargo and python3 (3.9-3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000}
LATENCY=${2:-50}
PORT=${PORT:-8091}
WORK=$(mktemp -d)
VENV=${PF_VENV:-/tmp/flow-bench-pf-venv}
trap 'kill ${MOCK_PID:-0} 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "building flow (release) and the mock..."
cargo build --release --quiet
cargo bench --bench batch --no-run --quiet 2>/dev/null
BENCH=$(ls -t target/release/deps/batch-* | grep -v '\.d$' | head -1)
"$BENCH" --serve "$PORT" --latency-ms "$LATENCY" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
sleep 1

if [ ! -x "$VENV/bin/pf" ]; then
  echo "installing promptflow into $VENV (once)..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet promptflow promptflow-tools keyrings.alt
fi
export PF_DISABLE_TRACING=true PROMPTFLOW_DISABLE_TELEMETRY=true
"$VENV/bin/pf" config set telemetry.enabled=false > /dev/null 2>&1 || true

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
  connection: open_ai_connection
  api: chat
  inputs:
    model: gpt-4o-mini
    deployment_name: gpt-4o-mini
    temperature: 0
    max_tokens: 64
    question: ${inputs.question}
YAML
printf '# system:\nYou answer in one short sentence.\n# user:\n{{question}}\n' > "$WORK/bench/ask.jinja2"
for i in $(seq 0 $((LINES - 1))); do echo "{\"question\": \"What is the number $i in words?\"}"; done > "$WORK/data.jsonl"
cat > "$WORK/conn.yaml" <<YAML
\$schema: https://azuremlschemas.azureedge.net/promptflow/latest/OpenAIConnection.schema.json
name: open_ai_connection
type: open_ai
api_key: sk-bench-0123456789abcdef
base_url: http://127.0.0.1:$PORT/v1
YAML
"$VENV/bin/pf" connection create -f "$WORK/conn.yaml" > /dev/null || { echo "pf connection create failed (a keyring backend is needed: pip install keyrings.alt)"; exit 1; }

echo "promptflow: pf run create ($LINES lines, ${LATENCY} ms latency, default workers)..."
start=$(date +%s.%N)
"$VENV/bin/pf" run create --flow "$WORK/bench" --data "$WORK/data.jsonl" --name "bench_$(date +%s)" > "$WORK/pf.log" 2>&1 || { tail -20 "$WORK/pf.log"; exit 1; }
pf_s=$(python3 -c "print($(date +%s.%N) - $start)")

echo "flow: flow run --data ($LINES lines, default concurrency)..."
cd "$WORK"
start=$(date +%s.%N)
OPEN_AI_CONNECTION_API_KEY=sk-bench-0123456789abcdef OPEN_AI_CONNECTION_API_BASE=http://127.0.0.1:$PORT/v1 \
  "$OLDPWD/target/release/flow" run bench --data data.jsonl --no-cache > /dev/null 2> flow.log
flow_s=$(python3 -c "print($(date +%s.%N) - $start)")
cd "$OLDPWD"

echo "| tool | $LINES lines, ${LATENCY} ms latency | throughput |"
echo "|---|---|---|"
python3 - "$LINES" "$pf_s" "$flow_s" <<'PY'
import sys
lines, pf, fl = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"| promptflow (pf run create) | {pf:.1f} s | {lines / pf:.0f} lines/s |")
print(f"| flow (flow run --data) | {fl:.1f} s | {lines / fl:.0f} lines/s |")
print(f"ratio: flow is {pf / fl:.1f}x faster")
PY
