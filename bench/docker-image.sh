#!/usr/bin/env bash
# Image size and build time of `flow build` images, as in docs/performance.md:
#   cargo build --release && bench/docker-image.sh
# Starts the project's Docker engine (scripts/docker-ci.sh) with the stand-in bases, builds
# flows/chat (no Python nodes) and flows/classification (a Python node, no requirements) with
# the release binary, `docker build --no-cache` each RUNS times, and prints the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
flow=${FLOW_BIN:-${CARGO_TARGET_DIR:-target}/release/flow}
[ -x "$flow" ] || { echo "no $flow: cargo build --release first" >&2; exit 2; }
eval "$(bash scripts/docker-ci.sh start)"
bash scripts/docker-ci.sh bases
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'binary: %s, %.1f MB\n' "$flow" "$(stat -c %s "$flow" | awk '{print $1/1e6}')"
for name in chat classification; do
  "$flow" build "flows/$name" --out-dir "$work/$name" >/dev/null 2>&1
  best=
  for _ in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    docker build --network host --no-cache -q -t "flow-bench-$name" "$work/$name" >/dev/null 2>&1
    took=$((($(date +%s%N) - start) / 1000000))
    if [ -z "$best" ] || [ "$took" -lt "$best" ]; then best=$took; fi
  done
  size=$(docker image inspect -f '{{.Size}}' "flow-bench-$name")
  awk -v n="$name" -v s="$size" -v r="$runs" -v b="$best" \
    'BEGIN { printf "%-15s image %6.1f MB   docker build --no-cache, best of %d: %.1f s\n", n, s / 1e6, r, b / 1000 }'
  docker rmi -f "flow-bench-$name" >/dev/null
done
docker image prune -f >/dev/null
for base in debian:bookworm-slim python:3.11-slim-bookworm; do
  awk -v n="$base" -v s="$(docker image inspect -f '{{.Size}}' "$base")" \
    'BEGIN { printf "%-26s (stand-in) %6.1f MB\n", n, s / 1e6 }'
done
