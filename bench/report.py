"""The short table printed after a run."""

from __future__ import annotations

from typing import Any


def _k(value: float) -> str:
    return f"{value / 1e3:,.0f}k" if value >= 10_000 else f"{value:,.0f}"


def _lat(p: dict[str, Any]) -> str:
    return f"{p.get('p50_us', 0):,.0f}/{p.get('p99_us', 0):,.0f}/{p.get('p999_us', 0):,.0f}" if p.get("n") else "-"


def table(r: dict[str, Any]) -> str:
    lines = [f"{'figure':<34} {'project':>16} {'bare redis-py':>16} {'raw limit':>16} {'vs bare':>8} {'vs raw':>7}"]

    def row(name: str, project: str, bare: str, raw: str, vs_bare: Any = "", vs_raw: Any = "") -> None:
        lines.append(f"{name:<34} {project:>16} {bare:>16} {raw:>16} {vs_bare!s:>8} {vs_raw!s:>7}")

    if "publish" in r:
        p = r["publish"]
        row("hub publish, quotes/s", _k(p["project"]), _k(p["bare"]), _k(p["raw"]), p["project_vs_bare"],
            p["project_vs_raw"])
        row("  raw writer, 1,000-quote batches", "", "", _k(p["raw_1000"]), "",
            round(p["project"] / p["raw_1000"], 2))
        row("  sim source -> Redis, quotes/s", _k(p["sim"]), "", _k(p["raw"]), "", p["sim_vs_raw"])
        row("  alpaca-py source -> Redis, q/s", _k(p["alpaca"]), "", _k(p["raw"]), "", p["alpaca_vs_raw"])
    if "ingest" in r:
        g = r["ingest"]
        row("alpaca ingest: hub->Redis vs bare SDK", _k(g["hub"]), f"SDK {_k(g['sdk'])}", "", g["hub_vs_sdk"])
        row("  per CPU second of the process", _k(g["hub_per_cpu_s"]), f"SDK {_k(g['sdk_per_cpu_s'])}", "",
            g["hub_vs_sdk_cpu"])
    _cluster(r, row)
    _cluster_tls(r, row)
    if "retention" in r:
        t = r["retention"]
        row("ended order in Redis, bytes", f"{t['bytes_per_order']:,}", "", "")
        row("  retention removes, orders/s", _k(t["removed_per_s"]), "", "")
    if "intake" in r:
        i = r["intake"]
        row(f"agent intake, quotes/s ({i['batch']}/msg)", _k(i["project"]), _k(i["bare"]), _k(i["raw"]),
            i["project_vs_bare"], i["project_vs_raw"])
        row("  1 quote/msg", _k(i["project_1"]), _k(i["bare"]), _k(i["raw_1"]), "", i["project_1_vs_raw_1"])
    _processes(r, row)
    _backtest(r, lines)
    return "\n".join(lines)


def _cluster(r: dict[str, Any], row: Any) -> None:
    if "cluster" not in r:
        return
    c = r["cluster"]
    row("hub publish: 3-master cluster vs 1 node", _k(c["cluster"]), f"node {_k(c['node'])}", "", c["cluster_vs_node"])
    if "fanout" in c:
        f = c["fanout"]
        setup = f["setup"]
        row(f"fan-out {setup['subscribers']} subs x {setup['symbols']} sym, msg/s", _k(f["cluster_delivered_per_s"]),
            f"node {_k(f['node_delivered_per_s'])}", "", f["cluster_vs_node"])
        row("  per Redis CPU s (cluster: masters)", _k(f["cluster_delivered_per_master_cpu_s"]),
            f"node {_k(f['node_delivered_per_redis_cpu_s'])}", "",
            round(f["cluster_delivered_per_master_cpu_s"] / f["node_delivered_per_redis_cpu_s"], 2))
        row("  busiest master's share of CPU; lost", f"{f['busiest_master_share']:.2f}; {f['lost']['cluster']}",
            f"lost {f['lost']['node']}", "")
        row("  Redis-bound ceiling, msg/s", _k(f["cluster_ceiling_per_s"]), f"node {_k(f['node_ceiling_per_s'])}",
            "", round(f["cluster_ceiling_per_s"] / f["node_ceiling_per_s"], 2))
        if "no_replicas" in f:
            n = f["no_replicas"]
            row("  no replicas: msg/s; ceiling", f"{_k(n['delivered_per_s'])}; {_k(n['ceiling_per_s'])}", "", "",
                f"{n['vs_node']}; {n['ceiling_vs_node']}")
    row("  cluster failover -> caches again, s", f"{c['failover_recovery_s']:.2f}", "", "")


def _cluster_tls(r: dict[str, Any], row: Any) -> None:
    if "cluster_tls" not in r:
        return
    t = r["cluster_tls"]
    row("hub publish: TLS+ACL cluster vs plain", _k(t["tls_acl"]), f"plain {_k(t['plain'])}", "", t["tls_vs_plain"])
    row("  cluster start, s (TLS+ACL / plain)", f"{t['tls_acl_start_s']:.2f}", f"{t['plain_start_s']:.2f}", "")


def _backtest(r: dict[str, Any], lines: list[str]) -> None:
    if "backtest" not in r:
        return
    b = r["backtest"]
    n = b.get("nautilus", {})
    lines.append(f"backtest, {b['quotes']:,} quotes over {b['symbols']} symbols in {b['span_s']:g}s of data "
                 f"(quotes/s; ratio to NautilusTrader's engine.run() and to the plain loop):")
    if "quotes_per_s" in n:
        lines.append(f"  {'NautilusTrader BacktestEngine':<32} {_k(n['quotes_per_s']):>10}   "
                     f"(incl. building QuoteTicks {_k(n['quotes_per_s_incl_build'])}, {n['maxrss_mb']:.0f} MB)")
    else:
        lines.append(f"  NautilusTrader: {n.get('unavailable', '?')}")
    lines.append(f"  {'plain Python loop (floor)':<32} {_k(b['floor']['quotes_per_s']):>10}")
    if "asyncio" in b:
        lines.append(f"  {'floor + one asyncio wake/quote':<32} {_k(b['asyncio']['quotes_per_s']):>10}")
    for case, name in (("noop", "no-op agent, throttle 0"), ("spotter", "Spotter, throttle 0"),
                       ("mm", "market maker, stack throttles")):
        c = b[case]
        lines.append(f"  {name:<32} {_k(c['quotes_per_s']):>10}   vs nautilus {c.get('vs_nautilus', '-')!s:>6}"
                     f"   vs floor {c['vs_floor']:>6}   {c['seconds']:.1f}s  {c['maxrss_mb']:.0f} MB"
                     + (f"  ({_k(c['quotes_per_cpu_s'])}/cpu-s)" if "quotes_per_cpu_s" in c else ""))
    lines.append(f"  memory: no-op agent max RSS {b['noop_quarter']['maxrss_mb']:.0f} MB at "
                 f"{b['noop_quarter']['quotes']:,} quotes, {b['noop']['maxrss_mb']:.0f} MB at {b['noop']['quotes']:,}")


def _processes(r: dict[str, Any], row: Any) -> None:
    if "latency" in r:
        for rate in (key for key in ("1000", "10000", "50000") if key in r["latency"]):  # --smoke: 10000 only
            lat = r["latency"][rate]
            row(f"e2e run() p50/p99/p99.9 us @{_k(int(rate))}/s", _lat(lat["project"]["run"]), _lat(lat["bare"]),
                _lat(lat["raw"]), f"{lat['p50_vs_bare']}/{lat['p99_vs_bare']}",
                f"{lat['p50_vs_raw']}/{lat['p99_vs_raw']}")
            row("  run() writing the cache: run()", _lat(lat["project_cache"]["run"]), "", "")
            row("  ... cache write visible", _lat(lat["project_cache"]["cache_visible"]), "", "")
            row("  lost quotes", str(lat["project"]["lost"] + lat["project_cache"]["lost"]), "", "")
    if "fanout" in r:
        f = r["fanout"]
        for n in (key for key in ("1", "4", "8") if key in f):
            row(f"fan-out {n} agents p50/p99/p99.9 us", _lat(f[n]["project"]["run"]), _lat(f[n]["bare"]), "",
                f"{f[n]['p50_vs_bare']}/{f[n]['p99_vs_bare']}")
    if "overload" in r:
        o = r["overload"]
        row("overload: hub RSS settled->peak MB", f"{o['hub_rss_kb']['settled'] / 1024:.0f}->"
            f"{o['hub_rss_kb']['peak'] / 1024:.0f}", "", "")
        row("overload: agent RSS settled->peak MB", f"{o['agent_rss_kb']['settled'] / 1024:.0f}->"
            f"{o['agent_rss_kb']['peak'] / 1024:.0f}", "", "")
        row("  agent alive / cut off by Redis", f"{o['agent_alive']}/{o['redis_output_limit_disconnections']}", "", "")
    if "orders" in r:
        o = r["orders"]
        row("order intent->ack p50/p99/p99.9 us", _lat(o["ack"]), f"ping {_lat(o['bare_ping'])}", "",
            o["ack_p50_vs_ping"])
        row("order intents/s", _k(o["intents_per_s"]), "", "")
    if "dashboard" in r:
        d = r["dashboard"]
        row(f"dashboard CPU % @{_k(d['rate'])}/s, 0/1 page", f"{d['idle']['dashboard_cpu_pct']:.1f}/"
            f"{d['one_page']['dashboard_cpu_pct']:.1f}", "", "")
        without, idle = d["without"]["redis_cpu_pct"], d["idle"]["redis_cpu_pct"]
        row("  Redis CPU % without -> with it", f"{without:.1f}->{idle:.1f}", "", "")
        row("  Redis commands/s it adds", f"{d['redis_commands_added_per_s']:,.0f}", "", "")
        row("  Redis time in them, % of a core", f"{d['redis_time_in_dashboard_commands_pct']:.2f}", "", "")
        row("  pushes/s to one page", f"{d['pushes_per_s']:.1f}", "", "")
