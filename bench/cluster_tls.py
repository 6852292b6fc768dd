"""Redis Cluster over TLS with client certificates and the per-role ACL vs plaintext: hub publish throughput.

The same pre-generated quotes through ``Publisher`` (bench.cluster.publish) into two local 3-master +
3-replica clusters: one plaintext without users, one TLS-only with client certificates (cluster bus and
replication over TLS too) and ``python -m core.acl --topology cluster``'s users, the hub logged in as
``hub``. Alternating rounds, medians; ``tls_vs_plain`` is the ratio. Also the start-up time of each cluster.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.cluster import publish
from bench.publish import run_uvloop
from bench.workload import make_quotes
from core.acl import setup_topology
from core.keys import Keys
from tests.cluster import redis_cluster
from tests.tls_certs import NodeSecurity, make_certs

ROUNDS = 5


def _secured(folder: Path) -> NodeSecurity:
    (folder / "certs").mkdir()
    acl = setup_topology(folder / "var", "cluster")
    return NodeSecurity(certs=make_certs(folder / "certs"), aclfile=acl,
                        replication_conf=acl.parent / "replication.conf",
                        admin_password=(folder / "var" / "secrets" / "admin.password").read_text().strip())


def run(url: str, smoke: bool) -> dict[str, Any]:
    quotes = make_quotes(20_000 if smoke else 1_000_000)
    keys = Keys("tf", cluster=True)
    with tempfile.TemporaryDirectory(prefix="tf-bench-tls-") as tmp:
        security = _secured(Path(tmp))
        hub_password = quote((Path(tmp) / "var" / "secrets" / "hub.password").read_text().strip(), safe="")
        started = time.monotonic()
        with redis_cluster() as plain:
            plain_start_s = time.monotonic() - started
            started = time.monotonic()
            with redis_cluster(security=security) as tls:
                tls_start_s = time.monotonic() - started
                tls_url = tls.url_for(f"hub:{hub_password}")  # in-process only: never on a command line
                rates: dict[str, list[float]] = {"plain": [], "tls": []}
                for _ in range(1 if smoke else ROUNDS):
                    rates["plain"].append(run_uvloop(publish(plain.url, keys, quotes)))
                    rates["tls"].append(run_uvloop(publish(tls_url, keys, quotes)))
    plain_qps, tls_qps = (statistics.median(rates[k]) for k in ("plain", "tls"))
    return {"unit": "quotes/s, s", "quotes": len(quotes), "plain": round(plain_qps), "tls_acl": round(tls_qps),
            "tls_vs_plain": round(tls_qps / plain_qps, 2), "plain_start_s": round(plain_start_s, 2),
            "tls_acl_start_s": round(tls_start_s, 2)}
