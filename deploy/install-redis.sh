#!/usr/bin/env bash
# Installs redis-server from the system's packages when it is missing.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is not installed and apt-get is not available: install Redis 7 (https://redis.io/docs/install/) and retry" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "redis-server is missing: run 'apt-get install -y redis-server' as root" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing redis-server with apt-get" >&2
# The package's own service is not used: the stack runs its own instance (deploy/redis.conf).
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
command -v redis-server >/dev/null
