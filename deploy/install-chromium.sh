#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (dashboard, tearsheet) when it is missing.
# playwright drives this system browser; its own browser download is never used.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed and apt-get is not available: install Chromium and retry" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing: run 'apt-get install -y chromium' as root" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing chromium with apt-get (browser tests)" >&2
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
  || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
command -v chromium >/dev/null
