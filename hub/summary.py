"""What ``make run`` prints once the stack is up: what runs, that the market streams, what to type next.

``python -m hub.status --summary`` waits (up to a minute) until a hub has published quotes and an
agent has run, then prints this; deploy/supervisord.conf runs it as the ``summary`` program, whose
output goes to supervisord's console.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Mapping

from core.tasks import stopped_within

State = Mapping[str, Mapping[str, Mapping[str, str]]]

DASHBOARD_URL = "http://127.0.0.1:8050"
DASHBOARD_ADDRESS = ("127.0.0.1", 8050)
UP_TIMEOUT_S = 60.0
POLL_S = 0.5


def is_up(state: State) -> bool:
    """A hub has published quotes and an agent has run."""
    streaming = any(int(h.get("quotes") or 0) > 0 for h in state["hubs"].values())
    return streaming and any(int(a.get("runs") or 0) > 0 for a in state["agents"].values())


def dashboard_listening() -> bool:
    try:
        with socket.create_connection(DASHBOARD_ADDRESS, timeout=0.5):
            return True
    except OSError:
        return False


def summary_text(state: State, dashboard: bool) -> str:
    hubs = [f"{name} ({h.get('source', '?')}: {h.get('symbols', '')}, {h.get('rate_qps', '?')} quotes/s)"
            for name, h in sorted(state["hubs"].items())]
    gateways = [f"{name} ({g.get('broker', '?')} broker)" for name, g in sorted(state["gateways"].items())]
    agents = sorted(state["agents"])
    lines = [
        "The stack is up: the market is streaming.",
        f"  market     {'; '.join(hubs) or 'no hub'}",
        f"  orders     {'; '.join(gateways) or 'no gateway'}",
        f"  agents     {len(agents)} running: {', '.join(agents)}",
        "  status     make status, or python -m hub.status --watch 1s",
        "  programs   supervisorctl -c deploy/supervisord.conf status   (restart NAME, stop NAME)",
        "             (python, redis-cli and supervisorctl: after source deploy/env.sh)",
        "  logs       var/log/   (one <program>.log each, and supervisord.log)",
    ]
    if dashboard:
        lines.append(f"  dashboard  {DASHBOARD_URL}")
    lines.append("  stop       Ctrl-C here, or make stop in another terminal")
    return "\n".join(lines)


async def wait_until_up(read: Callable[[], Awaitable[State]], stop: asyncio.Event,
                        timeout_s: float = UP_TIMEOUT_S) -> State | None:
    """The first state in which the stack is up, or None at the deadline or on stop."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        state = await read()
        if is_up(state):
            return state
        if time.monotonic() > deadline:
            return None
        await stopped_within(stop, POLL_S)
    return None
