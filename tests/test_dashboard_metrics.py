"""/metrics of the dashboard, scraped while a small stack runs and parsed with prometheus_client's parser."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from core.keys import Keys
from tests.alpaca_data_server import ServerThread
from tests.conftest import free_port
from tests.dashboard_helpers import get, snapshot, wait_until_serving
from tests.helpers import ProcessGroup, eventually
from tests.test_alpaca_source import server, start_hub, wait_subscribed

__all__ = ["server"]  # the local Alpaca-protocol server fixture, shared with test_alpaca_source

SYMBOLS = "AAPL,MSFT"
KEYS = Keys()


def scrape(base: str) -> dict[str, Any]:
    status, body = get(base + "/metrics")
    assert status == 200
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def scrape_until(base: str, ready: Any, message: str, timeout_s: float = 20) -> dict[str, Any]:
    """The first scrape for which ``ready(families)`` holds."""
    def attempt() -> dict[str, Any] | None:
        families = scrape(base)
        return families if ready(families) else None

    return eventually(attempt, timeout_s=timeout_s, message=message)


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float | None:
    family = families.get(sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_bucket"))
    for sample in family.samples if family else ():
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


@pytest.mark.timeout(120)
def test_metrics_move_as_quotes_flow(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--source", "sim", "--symbols", SYMBOLS, "--sim-rate", "400")
    processes.start("-m", "hub.execution", "--broker", "sim")
    processes.start("-m", "agents.spotter", "--instruments", SYMBOLS, "--throttle", "50ms")
    processes.start("-m", "agents.quote_manager", "--instruments", SYMBOLS, "--throttle", "250ms", "--quote-size", "10",
                    "--tolerance", "0.05", "--min-spread", "0.04", "--max-order-rate", "2")
    channels = [KEYS.quote_channel(s) for s in SYMBOLS.split(",")]
    eventually(lambda: all(n == 2 for _, n in sync_redis.pubsub_numsub(*channels)), message="agents subscribed")
    eventually(lambda: sync_redis.pubsub_numpat() == 1, message="the sim broker's tf:md:quote:* subscription")
    port = free_port()
    processes.start("-m", "hub.dashboard", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base)
    # the dashboard polls; it subscribes to nothing, so Redis fans no quote out to it
    assert all(n == 2 for _, n in sync_redis.pubsub_numsub(*channels)) and sync_redis.pubsub_numpat() == 1

    # each process's heartbeat carries its own counters: wait for both the hub's and the spotter's
    first = scrape_until(base, lambda m: value(m, "tf_quotes_received_total", agent="spotter", symbol="AAPL")
                         and value(m, "tf_quotes_published_total", hub="hub", symbol="AAPL"),
                         "per-symbol quote counters")
    published = value(first, "tf_quotes_published_total", hub="hub", symbol="AAPL")
    runs = value(first, "tf_agent_runs_total", agent="spotter")
    assert published and runs is not None
    later = scrape_until(base, lambda m: (value(m, "tf_quotes_published_total", hub="hub", symbol="AAPL") or 0)
                         > published and (value(m, "tf_agent_runs_total", agent="spotter") or 0) > runs,
                         "published quotes and runs counting up")
    assert (value(later, "tf_quotes_received_total", agent="spotter", symbol="MSFT") or 0) > 0

    for name in ("hub", "gateway", "spotter", "quote_manager"):
        assert value(later, "tf_process_up", name=name) == 1, name
    assert value(later, "tf_dashboard_redis_up") == 1
    assert value(later, "tf_risk_halt") == 0
    assert value(later, "tf_hub_connection", hub="hub", state="simulated") == 1
    assert value(later, "tf_agent_errors_total", agent="spotter") == 0
    assert value(later, "tf_agent_run_seconds_count", agent="spotter")
    assert value(later, "tf_agent_run_seconds_bucket", agent="spotter", le="+Inf") == \
        value(later, "tf_agent_run_seconds_count", agent="spotter")
    assert value(later, "tf_agent_lag_seconds_count", agent="spotter")
    assert value(later, "tf_risk_limit", limit="max_position") == 5000

    trading = scrape_until(base, lambda m: value(m, "tf_gateway_ack_seconds_count", gateway="gateway")
                           and value(m, "tf_order_events_total", event="new"), "orders through the gateway", 30)
    assert "tf_orders_open" in trading and "tf_position_qty" in trading and "tf_risk_rejections" in trading
    assert value(trading, "tf_quote_age_seconds", symbol="AAPL") is not None


def test_alpaca_connection_state_and_reconnects(server: ServerThread, processes: ProcessGroup) -> None:
    port = free_port()
    processes.start("-m", "hub.dashboard", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base)
    server.server.reject_406_for(8)  # another session holds the account's one stream: 406 until it goes
    start_hub(processes, server, "--symbols", "AAPL", "--connect-grace", "60s")

    def limit_banner() -> bool:
        banners = (snapshot(base) or {}).get("banners", [])
        return any(b["id"] == "hub-connection" and "406" in b["text"] for b in banners)

    eventually(limit_banner, timeout_s=8, message="the page names the connection limit")
    connected = scrape_until(base, lambda m: value(m, "tf_hub_connection", hub="hub", source="alpaca",
                                                   state="connected"), "connected once the limit clears")
    assert not [s for s in connected["tf_hub_connection"].samples if s.labels["state"] != "connected"]
    wait_subscribed(server, "AAPL")
    server.call(server.server.cut_all)
    scrape_until(base, lambda m: (value(m, "tf_hub_source_reconnects_total", hub="hub") or 0) >= 1
                 and value(m, "tf_hub_connection", state="connected"), "a reconnect counted")
