# The shell of a person at the stack: `source deploy/env.sh` once per shell, from the repository root.
#
# Activates the virtualenv, and lets you (not the stack's programs, which keep their own least-privilege
# roles, see docs/security.md) reach the stack's Redis as its `admin` user: `python -m ...` commands and
# `redis-cli` then authenticate from var/secrets/admin.password (written by make run). The password
# stays out of every command line (`ps`): redis-py reads the file, redis-cli reads REDISCLI_AUTH.
_tf_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -x "$_tf_root/.venv/bin/python" ]; then
  echo "deploy/env.sh: no virtualenv yet: run 'make run' or 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
. "$_tf_root/.venv/bin/activate"
if [ -r "$_tf_root/var/secrets/admin.password" ]; then
  export REDIS_URL="${TF_REDIS_URL:-redis://admin@127.0.0.1:6379/0}"
  export REDIS_PASSWORD_FILE="$_tf_root/var/secrets/admin.password"
  REDISCLI_AUTH="$(cat "$_tf_root/var/secrets/admin.password")"
  export REDISCLI_AUTH
  redis-cli() { command redis-cli --user admin --no-auth-warning "$@"; }
else
  echo "deploy/env.sh: no var/secrets yet (make run writes them): Redis without a password" >&2
fi
unset _tf_root
