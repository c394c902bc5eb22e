#!/usr/bin/env bash
# A Docker engine of the project's own, for the image tests (tests/it/docker_image.rs), on a
# machine that reaches Debian's packages but no image registry.
#
#   scripts/docker-ci.sh start   install Debian's docker.io if needed, start dockerd on its own
#                                socket and data root, print `export DOCKER_HOST=...`
#   scripts/docker-ci.sh bases   make the base images the generated Dockerfiles name, from
#                                Debian packages, when the engine does not have them yet
#   scripts/docker-ci.sh stop    stop that dockerd
#   scripts/docker-ci.sh env     print `export DOCKER_HOST=...`
#
# Everything lives under ${FLOW_CI_CACHE_DIR:-$HOME/.cache/flow-ci}/docker (outside the checkout):
# the data root keeps the images, so a later run finds its bases and costs seconds.
#
# The engine runs without a bridge network or iptables rules (`--bridge=none --iptables=false`):
# containers and builds use `--network host`, and only loopback traffic is made.
#
# The base images are stand-ins, labelled `org.flow.stand-in=true`, tagged with the names the
# Dockerfiles use:
#   debian:bookworm-slim        debootstrap --variant=minbase bookworm, docs and apt lists removed
#   python:3.11-slim-bookworm   that plus Debian's python3 (3.11) and python3-venv, with
#                               /usr/local/bin/python3 as the official image has it
set -euo pipefail

cache="${FLOW_CI_CACHE_DIR:-$HOME/.cache/flow-ci}/docker"
sock="$cache/docker.sock"
pidfile="$cache/dockerd.pid"
mirror="${FLOW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export DOCKER_HOST="unix://$sock"

log() { echo "docker-ci: $*" >&2; }

install_packages() {
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v docker >/dev/null 2>&1 || need+=(docker.io)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
  fi
}

answering() { docker version >/dev/null 2>&1; }

start() {
  install_packages
  mkdir -p "$cache/data" "$cache/exec"
  if answering; then
    log "dockerd already answers on $sock"
  else
    # A dockerd killed hard leaves its pid file and socket behind.
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "dockerd $(cat "$pidfile") is running but not answering; stopping it"
      stop
    fi
    rm -f "$sock" "$pidfile"
    log "starting dockerd (data root $cache/data)"
    # setsid: its own session, so that a test runner's process group signals do not reach it.
    setsid dockerd \
      --host "unix://$sock" \
      --data-root "$cache/data" \
      --exec-root "$cache/exec" \
      --pidfile "$pidfile" \
      --storage-driver overlay2 \
      --bridge=none --iptables=false --ip6tables=false \
      >"$cache/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 150); do
      answering && break
      sleep 0.2
    done
    if ! answering; then
      log "dockerd did not start; its log:"
      tail -30 "$cache/dockerd.log" >&2
      exit 1
    fi
  fi
  echo "export DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  if [ -f "$pidfile" ]; then
    local pid
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      log "stopping dockerd $pid"
      kill -TERM "$pid"
      for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      if kill -0 "$pid" 2>/dev/null; then
        log "dockerd $pid did not stop in 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$pidfile"
  fi
  # dockerd leaves its default network namespace mounted under the exec root.
  local m
  for m in $(awk -v root="$cache/exec/" 'index($2, root) == 1 { print $2 }' /proc/mounts 2>/dev/null); do
    umount "$m" 2>/dev/null || true
  done
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

bases() {
  answering || { log "no dockerd on $sock: run '$0 start' first"; exit 1; }
  local started=$SECONDS
  if ! have_image debian:bookworm-slim; then
    install_packages
    local work="$cache/work"
    rm -rf "$work"
    mkdir -p "$work"
    log "debootstrap --variant=minbase bookworm (about a minute)"
    debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
      || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    # As the official slim image: no package cache, lists, documentation or man pages.
    rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/lib/apt/lists/* \
      "$work/rootfs"/usr/share/doc/* "$work/rootfs"/usr/share/man/* "$work/rootfs"/usr/share/info/*
    tar -C "$work/rootfs" -c . | docker import \
      --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'LABEL org.flow.stand-in=true' \
      - debian:bookworm-slim >/dev/null
    rm -rf "$work"
    log "made debian:bookworm-slim"
  fi
  if ! have_image python:3.11-slim-bookworm; then
    log "making python:3.11-slim-bookworm from Debian's python3"
    # Debian's python3 is 3.11 on bookworm, the version the tag names.
    docker build --network host -q -t python:3.11-slim-bookworm - >/dev/null <<'EOF'
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python3 \
 && ln -s /usr/bin/python3 /usr/local/bin/python
LABEL org.flow.stand-in=true
CMD ["python3"]
EOF
    log "made python:3.11-slim-bookworm"
  fi
  log "bases ready ($((SECONDS - started)) s)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  bases) bases ;;
  env) echo "export DOCKER_HOST=$DOCKER_HOST" ;;
  *)
    echo "usage: $0 start|bases|stop|env" >&2
    exit 2
    ;;
esac
