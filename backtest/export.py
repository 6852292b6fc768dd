"""``--redis-url``: copy a finished backtest's state into Redis, to look at it with redis-cli.

Written: the cache hashes (``tf:cache:*``), order hashes, the open-order set, positions
and the order-event stream, under the config's namespace. Keys of that namespace the
backtest did not produce are left alone (nothing is flushed); the event stream is
replaced so a second export does not double it.
"""

from __future__ import annotations

from backtest.config import BacktestConfig
from backtest.results import BacktestResult
from core.connection import redis_client
from core.keys import Keys


async def export_to_redis(result: BacktestResult, config: BacktestConfig, redis_url: str) -> int:
    """Write the state; returns the number of keys written."""
    memory = result.state
    keys = Keys(config.backtest.namespace)
    client = redis_client(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        written = 0
        for name, fields in sorted(memory.hashes.items()):
            pipe.delete(name)
            pipe.hset(name, mapping=fields)
            written += 1
        for name, members in sorted(memory.sets.items()):
            pipe.delete(name)
            if members:
                pipe.sadd(name, *sorted(members))
            written += 1
        events = keys.order_events()
        pipe.delete(events)
        for _, fields in memory.streams.get(events, []):
            pipe.xadd(events, fields)
        written += 1
        await pipe.execute()
        return written
    finally:
        await client.aclose()
