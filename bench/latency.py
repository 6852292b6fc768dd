"""Process-level figures: end-to-end latency, fan-out, memory under overload.

Project: ``python -m hub --source sim`` -> Redis -> ``python -m bench.agent``
processes; latency is the agent's clock at the start of ``run()`` (and after
its cache write committed) minus the hub's ``ts_recv_ns`` stamp. Baselines:
``bench.peers`` publisher and subscriber processes, one quote per message,
latency = subscriber's clock on receipt minus the publisher's stamp.
Loss is counted against a raw reader that sees every message.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import redis

from bench.procs import Procs, QuoteCounter, publish_calls, rss_kb, wait_for, wait_publishing, wait_subscribers
from bench.server import flush
from bench.workload import percentiles, symbols

SYMBOLS = list(symbols(10))
CHANNELS = [f"tf:md:quote:{s}" for s in SYMBOLS]


def _trim(samples: list[int]) -> list[int]:
    """Drop the first tenth: connection warm-up, not steady state."""
    return samples[len(samples) // 10:]


def _received(client: redis.Redis, name: str) -> int:
    return int(client.hget(f"tf:agent:{name}", "received") or 0)


def project_run(url: str, rate: float, duration_s: float, agents: int = 1, cache_write: bool = True
                ) -> dict[str, Any]:
    flush(url)
    client = redis.Redis.from_url(url)
    with Procs(url) as procs:
        counter = QuoteCounter(url, CHANNELS)
        started = [procs.agent(f"bench{i}", SYMBOLS, cache_write=cache_write) for i in range(agents)]
        wait_subscribers(url, CHANNELS, agents + 1)
        calls_before = publish_calls(url)
        hub = procs.hub(SYMBOLS, rate)
        wait_publishing(url, calls_before, "the hub to publish")
        time.sleep(duration_s)
        procs.stop(hub)
        published = counter.count
        names = [f"bench{i}" for i in range(agents)]
        with contextlib.suppress(RuntimeError):  # heartbeats carry the agents' counts once a second
            wait_for(lambda: all(_received(client, n) >= counter.count for n in names), "agents to catch up", 4.0)
        received = [_received(client, n) for n in names]
        counter.close()
        run_ns: list[int] = []
        cache_ns: list[int] = []
        for proc, out in started:
            procs.stop(proc)
            data = json.loads(Path(out).read_text())
            run_ns += _trim(data["run_ns"])
            cache_ns += _trim(data["cache_ns"])
    client.close()
    result = {"published": published, "lost": sum(max(0, counter.count - r) for r in received),
              "run": percentiles(run_ns)}
    if cache_write:
        result["cache_visible"] = percentiles(cache_ns)
    return result


def baseline_run(url: str, kind: str, rate: float, duration_s: float, subscribers: int = 1,
                 sleep_s: float = 0.0) -> dict[str, Any]:
    flush(url)
    with Procs(url) as procs:
        subs = []
        for i in range(subscribers):
            out = procs.dir / f"{kind}-sub{i}.json"
            extra = [str(sleep_s)] if sleep_s else []
            subs.append((procs.start("-m", "bench.peers", f"{kind}-sub", url, ",".join(SYMBOLS), str(out), *extra),
                         out))
        wait_subscribers(url, CHANNELS, subscribers)
        calls_before = publish_calls(url)
        pub = procs.start("-m", "bench.peers", f"{kind}-pub", url, str(rate), ",".join(SYMBOLS))
        wait_publishing(url, calls_before, f"the {kind} publisher to publish")
        time.sleep(duration_s)
        procs.stop(pub)
        time.sleep(0.2)
        samples: list[int] = []
        errors = []
        for proc, out in subs:
            procs.stop(proc)
            data = json.loads(Path(out).read_text())
            samples += _trim(data["run_ns"])
            if data.get("error"):
                errors.append(data["error"])
    return {"run": percentiles(samples), "errors": errors}


def _ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    return round(a[key] / b[key], 2) if a.get(key) and b.get(key) else None


def latency(url: str, smoke: bool) -> dict[str, Any]:
    duration_s = 0.4 if smoke else 5.0
    out: dict[str, Any] = {"unit": "us from ts_recv_ns", "symbols": len(SYMBOLS), "duration_s": duration_s}
    for rate in (10_000,) if smoke else (1_000, 10_000, 50_000):  # the smoke checks the harness, not the curve
        project = project_run(url, rate, duration_s, cache_write=False)  # like the baselines: nothing but receive
        cached = project_run(url, rate, duration_s, cache_write=True)  # run() writes the cache every time
        bare = baseline_run(url, "bare", rate, duration_s)
        raw = baseline_run(url, "raw", rate, duration_s)
        out[str(rate)] = {
            "project": project, "project_cache": cached, "bare": bare["run"], "raw": raw["run"],
            "p50_vs_bare": _ratio(project["run"], bare["run"], "p50_us"),
            "p99_vs_bare": _ratio(project["run"], bare["run"], "p99_us"),
            "p50_vs_raw": _ratio(project["run"], raw["run"], "p50_us"),
            "p99_vs_raw": _ratio(project["run"], raw["run"], "p99_us"),
        }
    return out


def fanout(url: str, smoke: bool) -> dict[str, Any]:
    duration_s = 0.4 if smoke else 4.0
    rate = 10_000
    out: dict[str, Any] = {"unit": "us from ts_recv_ns", "rate": rate, "duration_s": duration_s}
    for n in (1, 4) if smoke else (1, 4, 8):
        project = project_run(url, rate, duration_s, agents=n, cache_write=False)
        bare = baseline_run(url, "bare", rate, duration_s, subscribers=n)
        out[str(n)] = {"project": project, "bare": bare["run"],
                       "p50_vs_bare": _ratio(project["run"], bare["run"], "p50_us"),
                       "p99_vs_bare": _ratio(project["run"], bare["run"], "p99_us")}
    return out


def overload(url: str, smoke: bool) -> dict[str, Any]:
    """Offer far more than run() handles (it sleeps 20 ms); sample RSS of hub and agent."""
    duration_s = 1.5 if smoke else 12.0
    flush(url)
    client = redis.Redis.from_url(url)
    with Procs(url) as procs:
        agent, _ = procs.agent("slow", SYMBOLS, run_sleep="20ms")
        wait_subscribers(url, CHANNELS, 1)
        hub = procs.hub(SYMBOLS, 1_000_000)
        wait_for(lambda: client.exists("tf:hub:bench"), "the hub's heartbeat")
        samples, omem = [], 0
        start = time.monotonic()
        while time.monotonic() - start < duration_s:
            samples.append((round(time.monotonic() - start, 2), rss_kb(hub.pid), rss_kb(agent.pid)))
            for c in client.client_list(_type="pubsub"):
                omem = max(omem, int(c["omem"]))
            time.sleep(0.1)
        agent_alive = agent.poll() is None
        disconnections = int(client.info("stats").get("client_output_buffer_limit_disconnections", 0))
        hub_fields = client.hgetall("tf:hub:bench")
        agent_fields = client.hgetall("tf:agent:slow")
        procs.stop(hub)
        procs.stop(agent)
    client.close()
    settle = [s for s in samples if s[0] >= duration_s / 4] or samples
    return {
        "offered_qps": 1_000_000, "run_s": 0.02, "duration_s": duration_s,
        "hub_rate_qps": float(hub_fields.get(b"rate_qps", 0)),
        "agent_received": int(agent_fields.get(b"received", 0)), "agent_runs": int(agent_fields.get(b"runs", 0)),
        "agent_conflated": int(agent_fields.get(b"conflated", 0)),
        "hub_rss_kb": {"settled": settle[0][1], "peak": max(s[1] for s in samples), "end": samples[-1][1]},
        "agent_rss_kb": {"settled": settle[0][2], "peak": max(s[2] for s in samples), "end": samples[-1][2]},
        "agent_growth_after_settle_kb": max(s[2] for s in settle) - settle[0][2],
        "hub_growth_after_settle_kb": max(s[1] for s in settle) - settle[0][1],
        "max_subscriber_backlog_bytes": omem, "agent_alive": agent_alive,
        "redis_output_limit_disconnections": disconnections,
    }
