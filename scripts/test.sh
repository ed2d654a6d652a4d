#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests that start the real broker and their own
# redis-server (free ports, temporary directories; never the system Redis). Installs redis-server
# (Debian) when it is missing, since the Redis tests need the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
  echo "test: installing redis-server (needed by the Redis tests)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
exec cargo test --workspace "$@"
