#!/usr/bin/env bash
# make stop: shut the supervisord stack down and return only once every process of it has exited
# (supervisorctl shutdown returns while the programs are still stopping; redis-server last).
#   deploy/stop.sh [SUPERVISORD_CONF [PIDFILE]]     deadline: STOP_TIMEOUT_S (default 60)
set -u
cd "$(dirname "$0")/.."
conf=${1:-deploy/supervisord.conf}
pidfile=${2:-var/supervisord.pid}
deadline_s=${STOP_TIMEOUT_S:-60}
ctl=.venv/bin/supervisorctl

pid=$(cat "$pidfile" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "make stop: the stack is not running (no live supervisord in $pidfile)"
    exit 0
fi
# Its programs, taken before the shutdown so that they can be waited for after supervisord has gone.
children=$(ps -o pid= --ppid "$pid" | tr '\n' ' ')
"$ctl" -c "$conf" shutdown >/dev/null || { echo "make stop: supervisorctl shutdown failed" >&2; exit 1; }
for ((tenths = 0; tenths < deadline_s * 10; tenths++)); do
    alive=""
    for p in $pid $children; do
        # a zombie has exited; only its parent's wait() is missing
        state=$(ps -o stat= -p "$p" 2>/dev/null || true)
        [ -n "$state" ] && [ "${state:0:1}" != "Z" ] && alive="$alive $p"
    done
    if [ -z "$alive" ]; then
        echo "make stop: stopped supervisord and its $(wc -w <<<"$children") programs after $((tenths / 10)).$((tenths % 10)) s"
        exit 0
    fi
    sleep 0.1
done
echo "make stop: still running after ${deadline_s} s:$alive (see var/log/supervisord.log)" >&2
exit 1
