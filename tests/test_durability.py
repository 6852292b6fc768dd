"""Redis kill -9 mid-flow under the stack's AOF, and the gateway's reconcile with the broker.

Real processes: a redis-server running deploy/redis.conf itself (AOF, ACL users from core/acl.py),
the Alpaca stand-in (the broker, whose memory survives Redis) and ``python -m hub.execution
--broker alpaca`` as the gateway user.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from bench.server import RedisServer, start_redis_server
from core.acl import setup
from core.exitcodes import ExitCode
from core.keys import Keys
from hub.execution.reconcile import RESTORED
from tests.conftest import REPO, free_port
from tests.helpers import ProcessGroup, eventually
from tests.test_alpaca_broker import KEYS_ENV, StandIn
from tests.test_gateway import submit_fields

KEYS = Keys()


DEPLOY_CONF = REPO / "deploy" / "redis.conf"


def persistence() -> str:
    """deploy/redis.conf's appendonly/appendfsync, for the printed figure."""
    conf = DEPLOY_CONF.read_text()
    return " ".join(re.search(rf"^{name}\s+\S+", conf, re.M).group(0) for name in ("appendonly", "appendfsync"))  # type: ignore[union-attr]


@pytest.fixture
def var(tmp_path: Path) -> Path:
    var = tmp_path / "var"
    setup(var)
    return var


@pytest.fixture
def aof_server(var: Path) -> Iterator[RedisServer]:
    """The stack's Redis: deploy/redis.conf itself (AOF, and the ACL users of core/acl.py)."""
    server = start_redis_server(base=(), config_file=str(DEPLOY_CONF), workdir=var / "redis")
    yield server
    server.stop()


def role_env(server: RedisServer, var: Path, role: str) -> dict[str, str]:
    return {"REDIS_URL": f"redis://{role}@127.0.0.1:{server.port}/0",
            "REDIS_PASSWORD_FILE": str(var / "secrets" / f"{role}.password")}


def admin_client(server: RedisServer, var: Path) -> redis.Redis:
    return redis.Redis(port=server.port, username="admin", decode_responses=True,
                       password=(var / "secrets" / "admin.password").read_text().strip())


@pytest.fixture
def stand_in(processes: ProcessGroup) -> StandIn:
    proc = processes.start("-m", "tests.alpaca_trading_server", "--port", str(free_port()),
                           "--ws-port", str(free_port()))
    line = eventually(lambda: re.search(r"READY rest=(\S+) ws=(\S+)", processes.output(proc)), timeout_s=15,
                      message="the Alpaca stand-in to listen")
    return StandIn(line.group(1), line.group(2))


def start_gateway(processes: ProcessGroup, stand_in: StandIn, env: dict[str, str]) -> subprocess.Popen[bytes]:
    listeners = stand_in.stats()["listeners"]
    proc = processes.start(
        "-m", "hub.execution", "--broker", "alpaca", "--alpaca-base-url", stand_in.rest,
        "--alpaca-stream-url", stand_in.ws, "--alpaca-requests-per-min", "10000", "--require-quote", "false",
        "--price-collar", "0", "--order-rate", "100000", "--order-burst", "100000", "--max-open-orders", "100000",
        "--max-position", "100000000", "--redis-wait", "20s", env={**KEYS_ENV, **env})
    eventually(lambda: stand_in.stats()["listeners"] > listeners, timeout_s=20, message="the gateway listening")
    return proc


def broker_orders(stand_in: StandIn) -> dict[str, dict[str, str]]:
    orders = requests.get(stand_in.rest + "/v2/orders", params={"status": "all", "limit": "100000"},
                          headers={"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "test-secret"},
                          timeout=10).json()
    return {o["client_order_id"]: o for o in orders}


def redis_orders(client: redis.Redis) -> dict[str, dict[str, str]]:
    return {key.split(":", 2)[2]: client.hgetall(key) for key in client.scan_iter(match=KEYS.order("*"), count=1000)}


def all_handled(client: redis.Redis) -> bool:
    groups = client.xinfo_groups(KEYS.order_intents())
    return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0


class Writer(threading.Thread):
    """An agent's side: XADD submit intents until Redis goes away, at most ``window`` ahead of the gateway."""

    def __init__(self, port: int, password: str, window: int = 20) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port, username="agent", password=password, decode_responses=True,
                                  socket_timeout=2)
        self.window = window
        self.acked: list[str] = []

    def run(self) -> None:
        try:
            while True:
                coid = f"dur-{len(self.acked)}"
                self.client.xadd(KEYS.order_intents(), submit_fields(coid, price="50"))
                self.acked.append(coid)
                if len(self.acked) > self.window:  # backpressure: wait for the gateway, as agents do
                    behind = KEYS.order(self.acked[-self.window])
                    eventually(lambda key=behind: self.client.exists(key), timeout_s=30, interval_s=0.002)
        except (redis.ConnectionError, redis.TimeoutError):
            return


@pytest.mark.timeout(180)
def test_redis_kill_9_mid_flow_loses_no_acknowledged_intent_and_no_order(
        processes: ProcessGroup, aof_server: RedisServer, stand_in: StandIn, var: Path) -> None:
    # the hub's quote hashes keep Redis writing (and, under everysec, its background fsync busy) as in the stack
    processes.start("-m", "hub", "--symbols", "AAPL,MSFT,SPY", "--sim-rate", "2000",
                    env=role_env(aof_server, var, "hub"))
    gateway = start_gateway(processes, stand_in, role_env(aof_server, var, "gateway"))
    writer = Writer(aof_server.port, (var / "secrets" / "agent.password").read_text().strip())
    writer.start()
    client = admin_client(aof_server, var)
    eventually(lambda: len(redis_orders(client)) >= 300, timeout_s=30, message="orders flowing")
    client.close()
    aof_server.kill()  # mid-flow: intents arriving, the gateway submitting and recording
    writer.join(10)
    assert gateway.wait(30) == ExitCode.REDIS_UNAVAILABLE

    aof_server.start()
    gateway = start_gateway(processes, stand_in, role_env(aof_server, var, "gateway"))  # as supervisord would
    client = admin_client(aof_server, var)
    eventually(lambda: all_handled(client), timeout_s=60, message="every surviving intent handled")
    at_broker, in_redis = broker_orders(stand_in), redis_orders(client)
    in_stream = {f["client_order_id"] for _, f in client.xrange(KEYS.order_intents())}
    print(f"\nkill -9 mid-flow ({persistence()}, ACL users): {len(writer.acked)} intents acknowledged, "
          f"{len(set(writer.acked) - in_stream)} missing from the stream after restart; {len(at_broker)} orders at "
          f"the broker, {len(set(at_broker) - set(in_redis))} unknown to Redis; "
          f"{stand_in.stats()['duplicate_submits']} duplicate submits")
    assert set(writer.acked) <= in_stream  # an acknowledged XADD survived the kill
    assert set(at_broker) <= set(in_redis)  # nothing at the broker is forgotten
    assert set(writer.acked) <= set(in_redis)  # and every acknowledged intent became an order
    assert stand_in.stats()["duplicate_submits"] == 0
    # ...and Redis itself kept them: none had to come back from the broker (it would be agent 'external')
    assert {in_redis[c]["agent"] for c in writer.acked} == {"tester"}
    assert RESTORED not in {f.get("reason") for _, f in client.xrange(KEYS.order_events())}
    client.close()
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(15) == ExitCode.OK


def test_orders_redis_lost_are_restored_from_the_broker(processes: ProcessGroup, aof_server: RedisServer,
                                                        stand_in: StandIn, var: Path) -> None:
    client = admin_client(aof_server, var)
    env = role_env(aof_server, var, "gateway")
    gateway = start_gateway(processes, stand_in, env)
    coids = [f"lost-{i}" for i in range(6)]
    for coid in coids:
        client.xadd(KEYS.order_intents(), submit_fields(coid, price="50", qty="10"))
    eventually(lambda: all(client.hget(KEYS.order(c), "status") == "new" for c in coids), timeout_s=20,
               message="six working orders")
    for coid in coids[:3]:
        stand_in.fill(coid, 10, "49.5")
    eventually(lambda: all(client.hget(KEYS.order(c), "status") == "filled" for c in coids[:3]), timeout_s=20,
               message="three fills recorded")
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(15) == ExitCode.OK

    # Redis comes back without them (a host crash inside the fsync window, an old backup restored)
    lost = [KEYS.order(c) for c in coids] + [KEYS.open_orders(), KEYS.order_events(), KEYS.position("AAPL")]
    client.delete(*lost)
    gateway = start_gateway(processes, stand_in, env)
    eventually(lambda: len(redis_orders(client)) == len(coids), timeout_s=20, message="orders restored")
    eventually(lambda: all(client.hget(KEYS.order(c), "status") == "filled" for c in coids[:3]), timeout_s=10,
               message="fills restored")
    restored = redis_orders(client)
    assert all(restored[c]["status"] == "new" for c in coids[3:])
    assert set(client.smembers(KEYS.open_orders())) == set(coids[3:])  # the kill switch can reach them again
    assert all(restored[c]["filled_qty"] == "10" for c in coids[:3])
    assert client.hget(KEYS.position("AAPL"), "qty") == "30"  # the broker's position
    reasons = [f.get("reason", "") for _, f in client.xrange(KEYS.order_events())]
    assert reasons.count(RESTORED) == 3  # the closed ones, which the open-order reconcile cannot see
    client.close()
    gateway.send_signal(signal.SIGTERM)
    assert gateway.wait(15) == ExitCode.OK
