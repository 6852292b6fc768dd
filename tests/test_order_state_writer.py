"""Order state has one writer: only hub/execution/store.py writes order hashes, the open-order set,
positions and execution events (the gateway and the brokers report through it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WRITES = {"hset", "hsetnx", "hdel", "hmset", "xadd", "publish", "sadd", "srem", "delete", "set", "expire", "unlink"}
ORDER_STATE = {"order", "open_orders", "position", "order_events", "exec_channel"}
OWNER = REPO / "hub" / "execution" / "store.py"


def writes_to_order_state(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in WRITES):
            continue
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr in ORDER_STATE:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {node.func.attr}({first.func.attr}(...))")
    return found


def test_only_the_order_store_writes_order_state() -> None:
    sources = [p for package in ("core", "cache", "agents", "hub") for p in (REPO / package).rglob("*.py")]
    offenders = [hit for path in sources if path != OWNER for hit in writes_to_order_state(path)]
    assert offenders == []
    assert writes_to_order_state(OWNER)  # the check does see the real writer
