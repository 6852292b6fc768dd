"""``python -m hub.status``: the live state of the stack as terminal tables.

Reads only Redis: hub, gateway and agent heartbeats, the latest quotes and
the cache. ``--watch 1s`` redraws every second; ``--json`` prints one snapshot
as JSON for scripts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from core.connection import ProcessSettings, redis_client, wait_for_redis
from core.errors import ConfigError
from core.keys import CACHE_TS_SUFFIX, PORTFOLIO, Keys
from core.process import config_failure, run_process
from core.settings import build, gather, option, pick

PROG = "python -m hub.status"


@dataclass(frozen=True, kw_only=True)
class StatusSettings:
    watch_ns: int = option("0s", key="watch", duration=True, help="redraw every interval (0: print once)")
    json: bool = option(False, help="print one snapshot as JSON")


async def _hashes(client: aioredis.Redis, pattern: str, prefix: str, names: Keys | None = None
                  ) -> dict[str, dict[str, str]]:
    """Hashes matching ``pattern`` by the name after ``prefix`` (a symbol without its cluster ``{tag}``)."""
    keys = sorted([k async for k in client.scan_iter(match=pattern, count=500)])
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hgetall(key)
        values = await pipe.execute()
    short = (lambda key: names.symbol_from(key, prefix)) if names else (lambda key: key[len(prefix):])
    return {short(key): value for key, value in zip(keys, values, strict=True) if value}


async def snapshot(client: aioredis.Redis, keys: Keys) -> dict[str, dict[str, dict[str, str]]]:
    """Everything the status tables show, as plain dicts."""
    changed = keys.cache_changed_prefix()
    cache = await _hashes(client, keys.cache_pattern(), keys.cache_prefix(), keys)
    return {
        "hubs": await _hashes(client, keys.hub_pattern(), keys.hub("")),
        "gateways": await _hashes(client, keys.gateway_pattern(), keys.gateway("")),
        "agents": await _hashes(client, keys.agent_pattern(), keys.agent("")),
        "quotes": await _hashes(client, keys.latest_quote("*"), keys.latest_quote_prefix(), keys),
        "cache": {k: v for k, v in cache.items() if not keys.cache(k).startswith(changed)},
    }


def _age(ts_ns: str | None, now_ns: int) -> str:
    if not ts_ns or not ts_ns.isdigit() or int(ts_ns) == 0:
        return "-"
    age_s = (now_ns - int(ts_ns)) / 1e9
    return f"{age_s:.1f}s" if age_s < 120 else f"{age_s / 60:.0f}m"


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return f"{title}: none\n"
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([title, line, "-" * len(line), *body]) + "\n"


def render(state: dict[str, dict[str, dict[str, str]]], now_ns: int) -> str:
    hubs = [(n, h.get("source", ""), h.get("role", "-"), h.get("connection", ""), h.get("rate_qps", ""),
             h.get("quotes", ""), h.get("dropped", ""), h.get("symbols", "")) for n, h in state["hubs"].items()]
    gateways = [(n, g.get("broker", ""), g.get("state", ""), g.get("intents", ""), g.get("open_orders", ""),
                 g.get("rejected", "")) for n, g in state["gateways"].items()]
    agents = [(n, a.get("class", ""), a.get("agent_type", ""), a.get("runs", ""), a.get("errors", ""),
               a.get("conflated", ""), a.get("bad_messages", ""), a.get("lag_ms", ""),
               _age(a.get("last_run_ns"), now_ns), f"{a.get('pid', '')}@{a.get('host', '')}")
              for n, a in state["agents"].items()]
    portfolio = state["cache"].get(PORTFOLIO, {})
    totals = [tuple(_short(portfolio.get(k, "-")) for k in PORTFOLIO_FIELDS)] if portfolio else []
    symbols = sorted((set(state["quotes"]) | set(state["cache"])) - {PORTFOLIO})
    market = []
    for symbol in symbols:
        quote, cache = state["quotes"].get(symbol, {}), state["cache"].get(symbol, {})
        derived = " ".join(f"{k}={_short(v)}({_age(cache.get(k + CACHE_TS_SUFFIX), now_ns)})"
                           for k, v in sorted(cache.items()) if not k.endswith(CACHE_TS_SUFFIX))
        market.append((symbol, quote.get("bid", "-"), quote.get("ask", "-"), _age(quote.get("ts_ns"), now_ns), derived))
    return "\n".join([
        _table("HUBS", ["name", "source", "role", "connection", "quotes/s", "quotes", "dropped", "symbols"], hubs),
        _table("GATEWAYS", ["name", "broker", "state", "intents", "open", "rejected"], gateways),
        _table("AGENTS", ["name", "class", "type", "runs", "errors", "conflated", "bad", "lag_ms", "last run",
                          "pid@host"], agents),
        _table("MARKET & CACHE", ["symbol", "bid", "ask", "quote age", "cache (value(age))"], market),
        _table("PORTFOLIO", list(PORTFOLIO_FIELDS), totals),
    ])


#: The portfolio totals agents.pnl writes to ``tf:cache:portfolio``.
PORTFOLIO_FIELDS = ("pnl_total", "pnl_realized", "pnl_unrealized", "positions", "unmarked")


def _short(value: str) -> str:
    try:
        return f"{float(value):.6g}"
    except ValueError:
        return value


async def show(process: ProcessSettings, settings: StatusSettings, stop: asyncio.Event) -> None:
    client = redis_client(process.redis_spec)
    try:
        await wait_for_redis(client, process.redis_spec, process.redis_wait_ns)
        while True:
            state = await snapshot(client, process.keys)
            if settings.json:
                print(json.dumps(state, indent=2, sort_keys=True))
            else:
                clear = "\x1b[2J\x1b[H" if settings.watch_ns and sys.stdout.isatty() else ""
                print(clear + render(state, time.time_ns()), flush=True)
            if not settings.watch_ns or stop.is_set():
                return
            try:
                await asyncio.wait_for(stop.wait(), settings.watch_ns / 1e9)
            except TimeoutError:
                continue
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        values = gather(argv, [ProcessSettings, StatusSettings], prog=PROG, description=__doc__.splitlines()[0])
        process = build(ProcessSettings, pick(values, ProcessSettings))
        settings = build(StatusSettings, pick(values, StatusSettings))
    except ConfigError as e:
        return config_failure(PROG, e)
    return run_process(PROG, "WARNING", lambda stop: show(process, settings, stop))


if __name__ == "__main__":
    sys.exit(main())
