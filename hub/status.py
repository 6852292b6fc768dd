"""``python -m hub.status``: the live state of the stack as terminal tables.

Reads only Redis: hub, gateway and agent heartbeats, positions, the latest
quotes and the cache. Every line fits 100 columns; prices are shown on the
instrument's tick and money in cents (the stored values keep full precision).
``--watch 1s`` redraws every second; ``--json`` prints one snapshot as JSON
for scripts.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import redis.asyncio as aioredis

from core.connection import ProcessSettings, redis_client, wait_for_redis
from core.errors import ConfigError
from core.keys import CACHE_TS_SUFFIX, PORTFOLIO, Keys
from core.process import config_failure, run_process
from core.settings import build, gather, option, pick
from core.tasks import stopped_within
from core.ticks import tick_size
from hub.summary import UP_TIMEOUT_S, dashboard_listening, summary_text, wait_until_up

PROG = "python -m hub.status"


@dataclass(frozen=True, kw_only=True)
class StatusSettings:
    watch_ns: int = option("0s", key="watch", duration=True, help="redraw every interval (0: print once)")
    json: bool = option(False, help="print one snapshot as JSON")
    summary: bool = option(False, help="wait until the stack streams, print what runs and what to type next, "
                                       "and exit (make run prints this)")


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
        "positions": await _hashes(client, keys.position_pattern(), keys.position("")),
        "cache": {k: v for k, v in cache.items() if not keys.cache(k).startswith(changed)},
    }


#: Every line of the tables fits a terminal this wide (the last column is cut with "…").
WIDTH = 100
#: A cache field older than this shows its age next to its value.
STALE_NS = 5_000_000_000
CENT = Decimal("0.01")


def _age(ts_ns: str | None, now_ns: int) -> str:
    if not ts_ns or not ts_ns.isdigit() or int(ts_ns) == 0:
        return "-"
    age_s = (now_ns - int(ts_ns)) / 1e9
    return f"{age_s:.1f}s" if age_s < 120 else f"{age_s / 60:.0f}m"


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except ArithmeticError:
        return None
    return value if value.is_finite() else None


def shown(field: str, text: str) -> str:
    """A stored value as the tables show it: prices on the instrument's tick, money in cents,
    counts as they are, other numbers to 4 significant digits; anything else unchanged."""
    value = _number(text)
    if value is None:
        return text
    if field in ("bid", "ask", "mark") or field.endswith("price"):
        return str(value.quantize(tick_size(abs(value)), ROUND_HALF_EVEN)) if value else "0"
    if field.startswith("pnl") or field.endswith("pnl") or field == "fees":
        return str(value.quantize(CENT, ROUND_HALF_EVEN))
    if value == value.to_integral_value() and "e" not in text.lower():
        return str(value.to_integral_value())
    return f"{value:.4g}" if abs(value) < 10_000 else f"{value:.0f}"


def _fit(line: str) -> str:
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def _table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    if not rows:
        return f"{title}: none\n"
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(_fit(x) for x in [title, line, "-" * len(line), *body]) + "\n"


def _wrapped(prefix: str, items: Sequence[str]) -> list[str]:
    """``prefix`` then the items separated by spaces, wrapped at WIDTH under the first item."""
    lines, current = [], prefix + items[0]
    for item in items[1:]:
        if len(current) + 1 + len(item) > WIDTH:
            lines.append(current)
            current = " " * len(prefix) + item
        else:
            current += " " + item
    return [_fit(line) for line in [*lines, current]]


def _cache_items(cache: dict[str, str], now_ns: int) -> list[str]:
    items = []
    for field, value in sorted(cache.items()):
        if field.endswith(CACHE_TS_SUFFIX):
            continue
        ts = cache.get(field + CACHE_TS_SUFFIX, "")
        stale = ts.isdigit() and now_ns - int(ts) > STALE_NS
        items.append(f"{field}={shown(field, value)}" + (f"({_age(ts, now_ns)})" if stale else ""))
    return items


def _market(state: dict[str, dict[str, dict[str, str]]], now_ns: int) -> str:
    symbols = sorted((set(state["quotes"]) | set(state["cache"])) - {PORTFOLIO})
    if not symbols:
        return "MARKET & CACHE: none\n"
    width = max(len("symbol"), *map(len, symbols))
    rows = [[s, shown("bid", q.get("bid", "-")), shown("ask", q.get("ask", "-")), _age(q.get("ts_ns"), now_ns)]
            for s in symbols for q in [state["quotes"].get(s, {})]]
    cols = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(["symbol", "bid", "ask", "age"])]
    cols[0] = width
    head = "  ".join(h.ljust(w) for h, w in zip(["symbol", "bid", "ask", "age"], cols, strict=True)) + "  cache"
    body = []
    for row in rows:
        prefix = "  ".join(c.ljust(w) for c, w in zip(row, cols, strict=True)) + "  "
        body += _wrapped(prefix, _cache_items(state["cache"].get(row[0], {}), now_ns) or ["-"])
    rule = "-" * max(len(head), *map(len, body))
    return "\n".join(["MARKET & CACHE (a cache field older than 5 s shows its age)", head, rule, *body]) + "\n"


def render(state: dict[str, dict[str, dict[str, str]]], now_ns: int) -> str:
    """The tables, every line at most WIDTH characters."""
    hubs = [(n, h.get("source", ""), h.get("role", "-"), h.get("connection", ""), h.get("rate_qps", ""),
             h.get("quotes", ""), h.get("dropped", ""), h.get("symbols", "")) for n, h in state["hubs"].items()]
    gateways = [(n, g.get("broker", ""), g.get("state", ""), g.get("intents", ""), g.get("open_orders", ""),
                 g.get("rejected", "")) for n, g in state["gateways"].items()]
    agents = [(n, a.get("agent_type", "").replace("_driven", ""), a.get("runs", ""), a.get("errors", ""),
               a.get("conflated", ""), a.get("bad_messages", ""), shown("lag_ms", a.get("lag_ms", "")),
               _age(a.get("last_run_ns"), now_ns), f"{a.get('pid', '')}@{a.get('host', '')}")
              for n, a in state["agents"].items()]
    positions = [(s, shown("qty", p.get("qty", "")), shown("avg_price", p.get("avg_price", "")),
                  shown("realized_pnl", p.get("realized_pnl", "")), shown("fees", p.get("fees", "")))
                 for s, p in state.get("positions", {}).items()]
    portfolio = state["cache"].get(PORTFOLIO, {})
    totals = [tuple(shown(k, portfolio.get(k, "-")) for k in PORTFOLIO_FIELDS)] if portfolio else []
    return "\n".join([
        _table("HUBS", ["name", "source", "role", "connection", "quotes/s", "quotes", "dropped", "symbols"], hubs),
        _table("GATEWAYS", ["name", "broker", "state", "intents", "open", "rejected"], gateways),
        _table("AGENTS", ["name", "type", "runs", "errors", "conflated", "bad", "lag ms", "last run", "pid@host"],
               agents),
        _table("POSITIONS", ["symbol", "qty", "avg price", "realized pnl", "fees"], positions),
        _table("PORTFOLIO", list(PORTFOLIO_FIELDS), totals),
        _market(state, now_ns),
    ])


#: The portfolio totals agents.pnl writes to ``tf:cache:portfolio``.
PORTFOLIO_FIELDS = ("pnl_total", "pnl_realized", "pnl_unrealized", "positions", "unmarked")


async def show(process: ProcessSettings, settings: StatusSettings, stop: asyncio.Event) -> None:
    client = redis_client(process.redis_spec)
    try:
        await wait_for_redis(client, process.redis_spec, process.redis_wait_ns)
        if settings.summary:
            await _summary(client, process.keys, stop)
            return
        while True:
            state = await snapshot(client, process.keys)
            if settings.json:
                shown_ok = _emit(json.dumps(state, indent=2, sort_keys=True))
            else:
                clear = "\x1b[2J\x1b[H" if settings.watch_ns and sys.stdout.isatty() else ""
                shown_ok = _emit(clear + render(state, time.time_ns()))
            if not shown_ok or not settings.watch_ns or stop.is_set():
                return
            if await stopped_within(stop, settings.watch_ns / 1e9):
                return
    finally:
        await client.aclose()


def _emit(text: str) -> bool:
    """Print; False once the reader has gone (``python -m hub.status --json | head``), which is no error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not complain a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return False
    return True


async def _summary(client: aioredis.Redis, keys: Keys, stop: asyncio.Event) -> None:
    state = await wait_until_up(lambda: snapshot(client, keys), stop)
    if state is not None:
        print(summary_text(state, dashboard_listening()), flush=True)
    elif not stop.is_set():
        print(f"{PROG}: the stack did not start streaming within {UP_TIMEOUT_S:.0f} s; see var/log/ "
              "(hub.log, supervisord.log)", file=sys.stderr, flush=True)


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
