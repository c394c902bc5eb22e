#!/usr/bin/env bash
# The HTML/CSV report at scale (issue 7): three variants of a two-node flow (an LLM node and a
# Python node) over N lines (default 10,000), each evaluated with built-in evaluators, then
# `flow report` over the three evaluations, timed; then the page rendered by headless Chromium,
# timed. Runs use the offline echo provider (no endpoint needed; the run directories are real).
#
#   bench/report-10k.sh [LINES]        # uses target/release/flow (cargo build --release first)
#   FLOW=/path/to/flow WORK=/tmp/r10k bench/report-10k.sh 10000
set -euo pipefail
lines=${1:-10000}
root=$(cd "$(dirname "$0")/.." && pwd)
flow=${FLOW:-${CARGO_TARGET_DIR:-$root/target}/release/flow}
chromium=${CHROMIUM:-/usr/bin/chromium}
# WORK=DIR keeps the project (runs and reports) in DIR for a look afterwards.
if [ -n "${WORK:-}" ]; then work=$WORK; mkdir -p "$work"; else work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; fi
cd "$work"

mkdir -p qa
cat > qa/flow.dag.yaml <<'EOF'
inputs:
  question: {type: string}
outputs:
  answer: {type: string, reference: '${clean.output}'}
nodes:
- {name: ask, use_variants: true}
- name: clean
  type: python
  source: {type: code, path: clean.py}
  inputs: {text: '${ask.output}'}
node_variants:
  ask:
    default_variant_id: v0
    variants:
      v0:
        node: {type: llm, source: {type: code, path: v0.jinja2}, connection: open_ai_connection, api: chat,
               inputs: {model: gpt-4o-mini, question: '${inputs.question}'}}
      v1:
        node: {type: llm, source: {type: code, path: v1.jinja2}, connection: open_ai_connection, api: chat,
               inputs: {model: gpt-4o-mini, question: '${inputs.question}'}}
      v2:
        node: {type: llm, source: {type: code, path: v2.jinja2}, connection: open_ai_connection, api: chat,
               inputs: {model: gpt-4o-mini, question: '${inputs.question}'}}
EOF
printf 'from promptflow.core import tool\n\n@tool\ndef clean(text: str) -> str:\n    return text.replace("[echo: offline, no model was called] ", "").replace("Please answer: ", "").strip()\n' > qa/clean.py
printf '# user:\n{{question}}\n' > qa/v0.jinja2
printf '# system:\nBe brief.\n# user:\n{{question}}\n' > qa/v1.jinja2
printf '# system:\nAnswer in one sentence.\n# user:\nPlease answer: {{question}}\n' > qa/v2.jinja2
python3 - "$lines" <<'EOF'
import json, random, sys
random.seed(7)
words = "the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing matches".split()
with open("data.jsonl", "w") as f:
    for i in range(int(sys.argv[1])):
        q = " ".join(random.choice(words) for _ in range(random.randint(6, 18)))
        # One line in ten has a ground truth no variant matches: those lines do not pass.
        truth = f"{i}: {q}?" if i % 10 else f"{i}: something else"
        f.write(json.dumps({"question": f"{i}: {q}?", "ground_truth": truth}) + "\n")
EOF

for v in v0 v1 v2; do
  "$flow" run qa --data data.jsonl --name "$v" --variant "\${ask.$v}" --offline --concurrency 64 >/dev/null 2>&1 || true
  "$flow" eval --run "$v" --evaluator exact_match --evaluator f1 --evaluator rouge_l \
    --name "$v-eval" --offline --no-report --allow-offline >/dev/null 2>&1 || true
done

echo "== flow report, $lines lines × 3 runs (release build: $flow)"
for args in "--format html" "--format html --traces all" "--format html --traces none" "--format csv" "--format csv --wide"; do
  for i in 1 2 3; do
    /usr/bin/time -f "$args: %e s wall, %U s user, %S s sys, %M KB peak RSS" "$flow" report v0-eval v1-eval v2-eval \
      $args -o "out.tmp" >/dev/null
  done
  ls -l out.tmp | awk -v a="$args" '{printf "%s: %.1f MB\n", a, $5 / 1048576}'
done
"$flow" report v0-eval v1-eval v2-eval -o report.html >/dev/null
/usr/bin/time -f "all (html + both CSVs): %e s wall, %M KB peak RSS" "$flow" report v0-eval v1-eval v2-eval --format all -o all >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -x "$chromium" ]; then
  echo "== Chromium: open report.html and dump the DOM after the script ran (3 times)"
  for i in 1 2 3; do
    profile=$(mktemp -d)
    start=$(date +%s.%N)
    "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$profile" --dump-dom "file://$work/report.html" > dom.html 2>/dev/null
    end=$(date +%s.%N)
    rm -rf "$profile"
    rows=$(grep -o '<tr class="line' dom.html | wc -l)
    ready=$(grep -c 'data-ready="true"' dom.html || true)
    script_ms=$(grep -o 'data-ready-ms="[0-9]*"' dom.html | grep -o '[0-9]*')
    page_ms=$(grep -o 'data-page-ms="[0-9]*"' dom.html | grep -o '[0-9]*')
    echo "chromium --dump-dom: $(echo "$end - $start" | bc) s; page interactive ${page_ms} ms after navigation start (data parse + first page: ${script_ms} ms); rows rendered: $rows, script finished: $ready"
  done
  profile=$(mktemp -d)
  start=$(date +%s.%N)
  "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --dump-dom "about:blank" > /dev/null 2>&1
  end=$(date +%s.%N)
  rm -rf "$profile"
  echo "chromium --dump-dom about:blank (browser start-up alone): $(echo "$end - $start" | bc) s"
fi
