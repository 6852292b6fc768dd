#!/usr/bin/env bash
# Redis ACL users for the stack (make run calls this; safe to run again: passwords are kept).
#   var/secrets/<role>.password   one per role (hub, agent, gateway, operator, dashboard, admin), mode 0600
#   var/redis/users.acl           loaded by deploy/redis.conf (aclfile), SHA-256 hashes only, mode 0600
# The rules come from core/acl.py, which builds them from the key layout in core/keys.py.
set -euo pipefail
cd "$(dirname "$0")/.."
umask 077
exec "${PYTHON:-.venv/bin/python}" -m core.acl --var "${VAR:-var}" "$@"
