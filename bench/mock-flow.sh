# Sourced by bench/pool.sh and bench/shards.sh: builds the release binaries and sets `flow` and
# `mock` (the loopback mock LLM, `benches/batch.rs --serve`), then `mock_flow_project DIR LINES`
# writes the one-LLM-node flow `DIR/bench` and a LINES-row dataset `DIR/d.jsonl`.
cargo build --release --quiet
cargo bench --bench batch --no-run --quiet 2>/dev/null
target=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)  # absolute: the runs start in the work folder
flow="$target/release/flow"
mock=$(ls -t "$target"/release/deps/batch-* | grep -v '\.d$' | head -1)

mock_flow_project() {
  local dir=$1 lines=$2
  mkdir -p "$dir/bench"
  cat > "$dir/bench/flow.dag.yaml" <<'YAML'
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
  printf 'user:\n{{question}}\n' > "$dir/bench/ask.jinja2"
  python3 -c "
import sys
for i in range(int(sys.argv[1])): print('{\"question\": \"q %d\"}' % i)" "$lines" > "$dir/d.jsonl"
}
