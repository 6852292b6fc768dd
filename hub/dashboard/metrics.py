"""Prometheus metrics for the whole stack, exported by the dashboard from what its reader gathered.

One scrape target for every process: the heartbeats already carry each
process's counters and histograms (see core.histogram), so hub, gateway and
agents need no HTTP endpoint, no port each and no extra work per quote. A
process's counters restart from zero with it; Prometheus's ``rate()`` handles
that as a counter reset. A collect reads memory only, never Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from core.histogram import read_histogram
from core.keys import PORTFOLIO
from hub.dashboard.state import Process, State
from hub.dashboard.view import View

#: heartbeat field -> (metric name, help) for counters every agent carries.
AGENT_COUNTERS = {
    "runs": ("tf_agent_runs", "run() calls that returned"),
    "errors": ("tf_agent_errors", "run() calls that raised"),
    "conflated": ("tf_agent_conflated", "events replaced by a newer one before run() saw them"),
    "received": ("tf_agent_received", "market-data and cache events received"),
    "bad_messages": ("tf_agent_bad_messages", "malformed messages skipped"),
    "stale_skipped": ("tf_agent_stale_skipped", "quotes skipped as older than max_quote_age"),
}
GATEWAY_COUNTERS = {
    "intents": ("tf_gateway_intents", "intents handled"),
    "submitted": ("tf_gateway_submitted", "orders and replaces sent to the broker"),
    "rejected": ("tf_gateway_rejected", "orders rejected before the broker"),
    "bad_intents": ("tf_gateway_bad_intents", "malformed intents"),
    "duplicates": ("tf_gateway_duplicates", "intents already handled (replays)"),
}
HUB_COUNTERS = {
    "quotes": ("tf_hub_quotes_published", "quotes published, all symbols"),
    "dropped": ("tf_hub_quotes_dropped", "quotes dropped under overload"),
    "reconnects": ("tf_hub_source_reconnects", "reconnects of the market-data source (Alpaca)"),
}
HISTOGRAMS = {
    ("agent", "run_ms"): ("tf_agent_run_seconds", "run() duration"),
    ("agent", "lag_ms"): ("tf_agent_lag_seconds", "hub receive -> run() start"),
    ("gateway", "ack_ms"): ("tf_gateway_ack_seconds", "intent sent by the agent -> handled by the gateway"),
}
PNL_FIELDS = {"pnl_realized": "realized", "pnl_unrealized": "unrealized", "pnl_total": "total"}


class StackCollector(Collector):
    def __init__(self, state: State, view: View) -> None:
        self._state = state
        self._view = view

    def collect(self) -> Iterator[Metric]:
        now_ns = time.time_ns()
        yield from self._dashboard()
        yield from self._processes(now_ns)
        yield from self._counters("agent", AGENT_COUNTERS, "agent")
        yield from self._counters("gateway", GATEWAY_COUNTERS, "gateway")
        yield from self._counters("hub", HUB_COUNTERS, "hub")
        yield from self._per_symbol()
        yield from self._histograms()
        yield from self._hub_connection()
        yield from self._orders()
        yield from self._risk()
        yield from self._positions(now_ns)

    def _live(self, kind: str) -> list[Process]:
        return [p for p in self._state.processes_of([kind]) if not p.gone]

    def _dashboard(self) -> Iterator[Metric]:
        state = self._state
        yield GaugeMetricFamily("tf_dashboard_redis_up", "1 while the dashboard reads Redis", value=state.redis_up)
        yield CounterMetricFamily("tf_dashboard_redis_reconnects", "times the dashboard got Redis back after losing it",
                                  value=state.redis_reconnects)

    def _processes(self, now_ns: int) -> Iterator[Metric]:
        up = GaugeMetricFamily("tf_process_up", "1 while the heartbeat is fresh, 0 when stale or gone",
                               labels=["kind", "name"])
        age = GaugeMetricFamily("tf_process_heartbeat_age_seconds", "age of the last heartbeat",
                                labels=["kind", "name"])
        started = GaugeMetricFamily("tf_process_start_time_seconds", "process start (epoch s)", labels=["kind", "name"])
        restarts = CounterMetricFamily("tf_process_restarts", "new instances under the same name seen by the dashboard",
                                       labels=["kind", "name"])
        for p in self._state.processes.values():
            labels = [p.kind, p.name]
            up.add_metric(labels, self._view.process_state(p, now_ns) == "running")
            if not p.gone:
                beat_ns = _int(p.fields.get("beat_ns"))
                if beat_ns:
                    age.add_metric(labels, max(0.0, (now_ns - beat_ns) / 1e9))
                started.add_metric(labels, _int(p.fields.get("started_ns")) / 1e9)
            restarts.add_metric(labels, max(p.restarts - 1, 0))
        yield from (up, age, started, restarts)

    def _counters(self, kind: str, table: dict[str, tuple[str, str]], label: str) -> Iterator[Metric]:
        for field, (name, help_text) in table.items():
            family = CounterMetricFamily(name, help_text, labels=[label])
            for p in self._live(kind):
                if field in p.fields:
                    family.add_metric([p.name], _float(p.fields[field]))
            yield family

    def _per_symbol(self) -> Iterator[Metric]:
        published = CounterMetricFamily("tf_quotes_published", "quotes the hub published, per symbol",
                                        labels=["hub", "symbol"])
        received = CounterMetricFamily("tf_quotes_received", "quotes an agent received, per symbol",
                                       labels=["agent", "symbol"])
        for family, kind, prefix in ((published, "hub", "published:"), (received, "agent", "received:")):
            for p in self._live(kind):
                for key, value in p.fields.items():
                    if key.startswith(prefix):
                        family.add_metric([p.name, key.removeprefix(prefix)], _float(value))
        rate = GaugeMetricFamily("tf_hub_rate_quotes_per_second", "quotes/s over the last heartbeat", labels=["hub"])
        for p in self._live("hub"):
            rate.add_metric([p.name], _float(p.fields.get("rate_qps")))
        yield from (published, received, rate)

    def _histograms(self) -> Iterator[Metric]:
        for (kind, field), (name, help_text) in HISTOGRAMS.items():
            family = HistogramMetricFamily(name, help_text, labels=[kind])
            for p in self._live(kind):
                reading = read_histogram(p.fields, field)
                if reading is not None:
                    buckets = [(_seconds_bound(bound), float(count)) for bound, count in reading.buckets]
                    family.add_metric([p.name], buckets, reading.sum / 1e3)
            yield family

    def _hub_connection(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("tf_hub_connection", "1 for the hub source's current connection state",
                                   labels=["hub", "source", "state"])
        for p in self._live("hub"):
            family.add_metric([p.name, p.fields.get("source", ""), p.fields.get("connection", "")], 1)
        yield family

    def _orders(self) -> Iterator[Metric]:
        state = self._state
        open_orders = GaugeMetricFamily("tf_orders_open", "working orders by symbol and state",
                                        labels=["symbol", "state"])
        counts: dict[tuple[str, str], int] = {}
        for o in state.open_orders:
            key = (o.get("symbol", ""), o.get("status", ""))
            counts[key] = counts.get(key, 0) + 1
        for (symbol, status), n in sorted(counts.items()):
            open_orders.add_metric([symbol, status], n)
        events = CounterMetricFamily("tf_order_events", "execution events read by the dashboard, by event",
                                     labels=["event"])
        for event, n in sorted(state.order_events.items()):
            events.add_metric([event], n)
        yield from (open_orders, events)

    def _risk(self) -> Iterator[Metric]:
        state = self._state
        yield GaugeMetricFamily("tf_risk_halt", "1 while the kill switch tf:risk:halt is set", value=bool(state.halt))
        yield GaugeMetricFamily("tf_risk_reduce_only", "1 while reduce-only is set", value=bool(state.reduce_only))
        rejections = CounterMetricFamily("tf_risk_rejections", "orders rejected by a pre-trade check, by check",
                                         labels=["gateway", "reason"])
        for p in self._live("gateway"):
            for key, value in p.fields.items():
                if key.startswith("rejected:"):
                    rejections.add_metric([p.name, key.removeprefix("rejected:")], _float(value))
        yield rejections
        limit = GaugeMetricFamily("tf_risk_limit", "a gateway risk limit", labels=["limit"])
        usage = GaugeMetricFamily("tf_risk_limit_usage_ratio", "current use of a risk limit (1 = at the limit)",
                                  labels=["limit"])
        for row in self._view.risk()["limits"]:
            limit.add_metric([row["limit"]], row["value"])
            if row["ratio"] is not None:
                usage.add_metric([row["limit"]], row["ratio"])
        yield from (limit, usage)

    def _positions(self, now_ns: int) -> Iterator[Metric]:
        state = self._state
        qty = GaugeMetricFamily("tf_position_qty", "signed position (negative = short)", labels=["symbol"])
        realized = GaugeMetricFamily("tf_position_realized_pnl", "realized PnL net of fees, per the gateway",
                                     labels=["symbol"])
        for symbol, fields in sorted(state.positions.items()):
            qty.add_metric([symbol], _float(fields.get("qty")))
            realized.add_metric([symbol], _float(fields.get("realized_pnl")))
        pnl = GaugeMetricFamily("tf_pnl", "PnL marked by the pnl agent (symbol portfolio: totals)",
                                labels=["symbol", "kind"])
        for symbol, fields in [*sorted(state.cache.items()), (PORTFOLIO, state.portfolio)]:
            for field, kind in PNL_FIELDS.items():
                if field in fields:
                    pnl.add_metric([symbol, kind], _float(fields[field]))
        quote_age = GaugeMetricFamily("tf_quote_age_seconds", "age of the latest quote (hub receive time)",
                                      labels=["symbol"])
        for symbol, quote in sorted(state.quotes.items()):
            ts_ns = _int(quote.get("ts_recv_ns") or quote.get("ts_ns"))
            if ts_ns:
                quote_age.add_metric([symbol], max(0.0, (now_ns - ts_ns) / 1e9))
        yield from (qty, realized, pnl, quote_age)


def registry_for(state: State, view: View) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StackCollector(state, view))
    return registry


def _seconds_bound(bound_ms: str) -> str:
    return bound_ms if bound_ms == "+Inf" else f"{float(bound_ms) / 1e3:g}"


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _float(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0
