#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests that start the real broker and their own
# redis-server (free ports, temporary directories; never the system Redis). Installs what the
# Redis tests need when it is missing: redis-server (Debian's 7.0), and valkey-server from
# Debian's bookworm-backports (8.0, for the WAITAOF test: Debian's Redis is older than 7.2).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v valkey-server >/dev/null 2>&1 || missing+=(valkey-server)
if ((${#missing[@]})); then
  echo "test: installing ${missing[*]} (needed by the Redis tests)"
  if [[ " ${missing[*]} " == *" valkey-server "* ]] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
  fi
  $SUDO apt-get update -qq
  for pkg in "${missing[@]}"; do
    if [ "$pkg" = valkey-server ]; then
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports valkey-server >/dev/null
    else
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    fi
  done
fi
exec cargo test --workspace "$@"
