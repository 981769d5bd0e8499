#!/usr/bin/env bash
# deps.sh - install what shardflow needs to build, test and fuzz (idempotent).
# Debian 12 packages only; safe to run again and again.
set -euo pipefail
PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev \
libzmq3-dev libczmq-dev liblmdb-dev libmsgpack-dev libsodium-dev \
libjansson-dev libjemalloc-dev python3 python3-zmq procps"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q $missing
fi
