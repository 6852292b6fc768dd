"""The operator's cancel-all is one XADD through one function, from the command and from the dashboard alike,
and it trims the operator stream (before: the command's XADD had no MAXLEN, so the stream grew forever)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from core.connection import ProcessSettings
from core.keys import Keys
from core.settings import build
from hub.dashboard.control import Controls
from hub.execution import cancel_all
from hub.execution.cancel_all import CancelAllSettings, send

KEYS = Keys()
#: Redis trims an approximate MAXLEN by whole stream nodes (stream-node-max-entries, 100 by default).
NODE_ENTRIES = 100


async def _added(client: aioredis.Redis) -> int:
    return int((await client.xinfo_stream(KEYS.operator_intents()))["entries-added"])


async def test_command_and_dashboard_send_one_trimmed_cancel_all_each(
        redis_url: str, aredis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cancel_all, "INTENTS_MAXLEN", 10, raising=False)  # trims as 100,000 does
    async with aredis.pipeline(transaction=False) as pipe:
        for i in range(3 * NODE_ENTRIES):
            pipe.xadd(KEYS.operator_intents(), {"kind": "old", "n": str(i)})
        await pipe.execute()

    await send(build(ProcessSettings, {"redis_url": redis_url}), CancelAllSettings(symbol="AAPL"))
    assert await _added(aredis) == 3 * NODE_ENTRIES + 1  # one entry, not two
    await Controls(aredis, KEYS).cancel_all("127.0.0.1")
    assert await _added(aredis) == 3 * NODE_ENTRIES + 2

    assert await aredis.xlen(KEYS.operator_intents()) <= 10 + NODE_ENTRIES  # trimmed, by both paths
    tail = [fields for _, fields in await aredis.xrevrange(KEYS.operator_intents(), count=2)]
    assert [(f["kind"], f["agent"], f.get("symbol")) for f in tail] == [
        ("cancel_all", "operator", None), ("cancel_all", "operator", "AAPL")]
