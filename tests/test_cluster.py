"""The stack on a real Redis Cluster (3 masters + 3 replicas): hash-tagged keys, sharded pub/sub."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException as RedisClusterError

import core.cluster
from core.cluster import ClusterURL, ShardedSubscription, is_cluster_url, parse_cluster_url, slot_of
from core.connection import ProcessSettings, redis_client
from core.errors import ConfigError
from core.exitcodes import ExitCode
from core.keys import Keys
from core.resp import Address
from hub.execution.brokers.sim import SimBrokerSettings
from tests.cluster import LocalCluster, redis_cluster
from tests.conftest import REPO, free_port
from tests.execution_helpers import orders_state, sim_stack
from tests.helpers import ProcessGroup, eventually, eventually_async
from tests.test_gateway import submit_fields
from tests.test_order_retention import check_retention

SYMBOLS = [f"C{i:02d}" for i in range(50)]


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture
def cluster_ports(local_cluster: LocalCluster) -> list[int]:
    return local_cluster.ports


@pytest.fixture
def cluster(cluster_ports: list[int]) -> Iterator[RedisCluster]:
    client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster_ports[:2]],
                          decode_responses=True)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def test_cluster_url_follows_redis_py_startup_nodes() -> None:
    url = "redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/"
    assert is_cluster_url(url) and not is_cluster_url("redis://127.0.0.1:6379/0")
    spec = parse_cluster_url(url)
    assert spec == ClusterURL((("10.0.0.1", 7000), ("10.0.0.2", 7001)), tls=False, username="app", password="s3cret")
    assert "s3cret" not in repr(spec)
    assert parse_cluster_url("rediss+cluster://h:1/").tls
    for bad in ("redis+cluster:///", "redis+cluster://h/", "redis+cluster://h:1/3"):
        with pytest.raises(ConfigError, match="redis_url"):
            ProcessSettings(redis_url=bad)
    assert ProcessSettings(redis_url=url).keys.cluster


def test_hash_tags_only_in_cluster_mode() -> None:
    single, cluster = Keys("tf"), Keys("tf", cluster=True)
    assert single.cache("AAPL") == "tf:cache:AAPL" and single.quote_channel("AAPL") == "tf:md:quote:AAPL"
    assert cluster.cache("AAPL") == "tf:cache:{AAPL}"
    names = [cluster.cache("AAPL"), cluster.latest_quote("AAPL"), cluster.quote_channel("AAPL"),
             cluster.cache_changed_channel("AAPL"), cluster.trade_channel("AAPL")]
    assert len({slot_of(n) for n in names}) == 1  # one instrument, one slot: EVAL and PUBLISH+HSET stay on a node
    assert cluster.symbol_from(cluster.quote_channel("AAPL"), cluster.quote_prefix()) == "AAPL"


class _SlotMaps:
    """Stands in for redis-py's cluster client: each slot-map refresh installs the next routing table."""

    def __init__(self, *tables: dict[bytes, Address]) -> None:
        self.tables, self.route, self.refreshes = list(tables), tables[0], 0
        self.nodes_manager = self

    async def initialize(self) -> None:
        self.refreshes += 1
        self.route = self.tables[min(self.refreshes, len(self.tables) - 1)]

    async def address(self, _client: object, channel: str | bytes) -> Address:
        return self.route[channel.encode() if isinstance(channel, str) else channel]


async def test_lost_shard_moves_its_channels_once_with_one_map_refresh_per_attempt(
        redis_url: str, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A master lost; the first resubscribe reaches one new master and not the other (still failing over)."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    old, new = Address(host="127.0.0.1", port=port), Address(host="localhost", port=port)  # two "nodes"
    down = Address(host="127.0.0.1", port=free_port(), connect_timeout_s=1.0)
    maps = _SlotMaps({b"a": old, b"b": old}, {b"a": new, b"b": down}, {b"a": new, b"b": new})
    monkeypatch.setattr(core.cluster, "node_address", maps.address)
    sharded = ShardedSubscription(maps)  # type: ignore[arg-type]
    [lost] = await sharded.subscribe("a", "b", "a")
    assert lost.channels == {b"a", b"b"}

    [moved] = await sharded._move(lost)  # attempt 1: "a" on new, "b" refused; attempt 2: both on new
    assert maps.refreshes == 2  # one fresh map per attempt (it was read twice per retry)
    assert moved.channels == {b"a", b"b"}  # "a" once, though both attempts offered it
    assert moved.address == new and sharded.resubscribed == 1
    got: list[tuple[bytes, bytes]] = []
    listener = asyncio.ensure_future(sharded.listen(lambda channel, data: got.append((channel, data))))
    try:
        for channel in ("a", "b"):
            sync_redis.execute_command("SPUBLISH", channel, channel + "1")

        async def delivered() -> bool:
            return len(got) >= 2

        await eventually_async(delivered, message="both channels delivered")
        assert sorted(got) == [(b"a", b"a1"), (b"b", b"b1")]
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await sharded.aclose()


def _masters_for(client: RedisCluster, symbols: list[str]) -> set[str]:
    return {client.get_node_from_key(Keys("tf", cluster=True).cache(s)).name for s in symbols}


def _stack(url: str, tmp_path: Path) -> ProcessGroup:
    env = {**os.environ, "REDIS_URL": url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
    group.start("-m", "hub", "--source", "sim", "--symbols", ",".join(SYMBOLS), "--sim-rate", "2000")
    group.start("-m", "agents.spotter", "--instruments", ",".join(SYMBOLS), "--throttle", "50ms")
    return group


def _stamps(client: RedisCluster) -> dict[str, int]:
    """fair_price write time per symbol (0: none yet); {} while the cluster is failing over."""
    try:
        return {s: int(client.hget(f"tf:cache:{{{s}}}", "fair_price:ts_ns") or 0) for s in SYMBOLS}
    except (RedisClusterError, redis.RedisError):
        return {}


@pytest.mark.timeout(120)
def test_sim_stack_over_the_cluster_fills_every_cache(local_cluster: LocalCluster, cluster: RedisCluster,
                                                      tmp_path: Path) -> None:
    group = _stack(local_cluster.url, tmp_path)
    try:
        eventually(lambda: (st := _stamps(cluster)) and all(st.values()), timeout_s=60,
                   message="fair_price in every tf:cache:{SYM}")
        assert len(_masters_for(cluster, SYMBOLS)) == 3  # the 50 symbols live on all three masters
        assert cluster.exists("tf:cache:C00") == 0  # no untagged single-node names on the cluster
        # quotes arrived over sharded pub/sub (received counts messages, not the start-up priming) ...
        eventually(lambda: int(cluster.hget("tf:agent:spotter", "received") or 0) > 0, message="quotes received")
        # ... and every master carries its own share of the quote channels
        per_master = [cluster.execute_command("PUBSUB SHARDCHANNELS", "tf:md:quote:*", target_nodes=node)
                      for node in cluster.get_primaries()]
        assert len(per_master) == 3 and all(per_master) and sum(map(len, per_master)) == len(SYMBOLS)
        eventually(lambda: int(cluster.hget("tf:hub:hub", "quotes") or 0) > 0, message="hub heartbeat")
        status = group.run("-m", "hub.status", "--json", "true", env={"REDIS_URL": local_cluster.url})
        state = json.loads(status.stdout)
        assert set(state["cache"]) == set(SYMBOLS) and set(state["quotes"]) == set(SYMBOLS), status.stderr[-2000:]
        assert "spotter" in state["agents"] and "hub" in state["hubs"]
    finally:
        group.stop_all()
    for proc, _ in group.procs:
        assert proc.returncode == 0, group.output(proc)[-2000:]


@pytest.mark.timeout(150)
def test_master_killed_mid_run_stack_recovers_in_process(tmp_path: Path) -> None:
    with redis_cluster() as fresh:  # its own cluster: this one loses a master
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in fresh.ports],
                              decode_responses=True)
        group = _stack(fresh.url, tmp_path)
        # its trading client's exec-channel subscription (redis-py classic pub/sub) lives on the victim too
        trader = group.start("-m", "agents.quote_manager", "--instruments", "C00", "--name", "qm")
        try:
            eventually(lambda: (st := _stamps(client)) and all(st.values()), timeout_s=60, message="stack up")
            eventually(lambda: client.exists("tf:agent:qm"), timeout_s=30, message="the quote manager up")
            victim = client.get_node_from_key("tf:cache:{C00}").port
            assert client.get_node_from_key(Keys("tf", cluster=True).exec_channel()).port == victim
            fresh.kill(victim)
            killed_ns = time.time_ns()
            eventually(lambda: (st := _stamps(client)) and all(ts > killed_ns for ts in st.values()), timeout_s=60,
                       interval_s=0.05, message="every cache updating again after the failover")
            recovered_s = (time.time_ns() - killed_ns) / 1e9
            print(f"cluster failover: master :{victim} killed, every tf:cache:{{SYM}} updating again after "
                  f"{recovered_s:.2f}s (cluster-node-timeout 2s)")
            assert client.get_node_from_key("tf:cache:{C00}").port != victim
            for proc, _ in group.procs:  # carried on in-process: no restart needed
                assert proc.poll() is None, group.output(proc)[-3000:]
            assert trader.poll() is None
        finally:
            group.stop_all()
            client.close()


@pytest.mark.timeout(90)
async def test_commands_with_movable_keys_follow_the_cluster_when_the_node_asked_for_their_keys_dies() -> None:
    # redis-py asks one node fixed at start for the keys of XREADGROUP/XREAD; it never replaced a dead one,
    # so a gateway whose node was the killed master rebuilt itself in a loop, its slot map refreshed each time
    stream = Keys("tf", cluster=True).order_intents()
    with redis_cluster() as fresh:
        client = core.cluster.cluster_client(fresh.url, ride_failover=False)
        try:
            await client.xadd(stream, {"n": "1"})
            assert await client.xread({stream: "0"}, count=1)
            asked = client.commands_parser.node.port
            fresh.kill(asked)

            async def read() -> bool:
                try:
                    return bool(await client.xread({stream: "0"}, count=1))
                except (RedisClusterError, redis.RedisError):
                    await core.cluster.refresh_slots(client)  # as the gateway's wait for the new master does
                    return False

            await eventually_async(read, timeout_s=30, interval_s=0.2, message="XREAD served after the failover")
            assert client.commands_parser.node.port != asked
        finally:
            await client.aclose()


@pytest.mark.timeout(120)
def test_gateway_over_the_cluster_makes_every_order_once(local_cluster: LocalCluster, cluster: RedisCluster,
                                                         tmp_path: Path) -> None:
    keys = Keys("tf", cluster=True)
    cluster.hset(keys.latest_quote("AAPL"), mapping={"bid": 100.0, "bid_size": 100, "ask": 100.02, "ask_size": 100,
                                                     "ts_ns": time.time_ns()})
    env = {**os.environ, "REDIS_URL": local_cluster.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
    total = 2000
    ids = [f"c-{i}" for i in range(total)]
    try:
        gateway = group.start("-m", "hub.execution", "--broker", "sim", "--order-rate", "100000", "--order-burst",
                              "100000", "--max-open-orders", "100000", "--max-position", "10000000")
        eventually(lambda: cluster.exists("tf:gateway:gateway"), timeout_s=30, message="the gateway heartbeat")
        pipe = cluster.pipeline(transaction=False)  # every intent in the {orders} slot
        for coid in ids:
            pipe.xadd(keys.order_intents(), submit_fields(coid))
        pipe.execute()

        def handled() -> bool:
            groups = cluster.xinfo_groups(keys.order_intents())
            return bool(groups) and groups[0]["pending"] == 0 and groups[0]["lag"] == 0 and \
                cluster.scard(keys.open_orders()) == total

        eventually(handled, timeout_s=60, message=f"all {total} intents handled")
        news: dict[str, int] = {}
        for _, fields in cluster.xrange(keys.order_events()):
            if fields["event"] == "new":
                news[fields["client_order_id"]] = news.get(fields["client_order_id"], 0) + 1
        assert set(news) == set(ids) and set(news.values()) == {1}
        assert cluster.hget(keys.order("c-0"), "status") == "new"
        assert gateway.poll() is None
    finally:
        group.stop_all()


@pytest.mark.timeout(150)
def test_gateway_through_a_master_failover_mid_way(tmp_path: Path) -> None:
    keys = Keys("tf", cluster=True)
    total = 2000
    ids = [f"f-{i}" for i in range(total)]
    with redis_cluster() as fresh:
        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in fresh.ports], decode_responses=True)
        client.hset(keys.latest_quote("AAPL"), mapping={"bid": 100.0, "bid_size": 100, "ask": 100.02,
                                                        "ask_size": 100, "ts_ns": time.time_ns()})
        env = {**os.environ, "REDIS_URL": fresh.url, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
        group = ProcessGroup(env, tmp_path, cwd=REPO, python=sys.executable)
        try:
            gateway_args = ("-m", "hub.execution", "--broker", "sim", "--order-rate", "2000", "--order-burst", "100",
                            "--max-open-orders", "100000", "--max-position", "10000000")
            gateway = group.start(*gateway_args)
            eventually(lambda: client.exists("tf:gateway:gateway"), timeout_s=30, message="the gateway heartbeat")
            pipe = client.pipeline(transaction=False)
            for coid in ids:
                pipe.xadd(keys.order_intents(), submit_fields(coid))
            pipe.execute()
            master = client.get_node_from_key(keys.open_orders())
            client.execute_command("WAIT", 1, 5000, target_nodes=master)  # the intents are on the replica
            eventually(lambda: client.scard(keys.open_orders()) >= 300, timeout_s=30, message="gateway under way")
            fresh.kill(master.port)
            killed = time.monotonic()
            restarts = [gateway]

            def handled() -> tuple[int, dict[str, int]] | None:
                # as supervisord does (autorestart=unexpected): a gateway that lost Redis exits 69 and is restarted
                code = restarts[-1].poll()
                if code is not None:
                    assert code == ExitCode.REDIS_UNAVAILABLE, group.output(restarts[-1])[-3000:]
                    restarts.append(group.start(*gateway_args))
                return orders_state(client, keys, ids)

            try:
                state = eventually(handled, timeout_s=90, interval_s=0.2,
                                   message="every intent handled after the failover")
            except AssertionError as e:  # where it stopped, and what the gateway said
                raise AssertionError(f"{e}\ngroups: {_groups(client, keys)}\n"
                                     f"{group.output(restarts[-1])[-4000:]}") from None
            print(f"gateway failover: all {total} intents handled {time.monotonic() - killed:.1f}s after the kill, "
                  f"{len(restarts) - 1} supervised restart(s); open orders {state[0]}, "
                  f"ids with a 'new' event {len(state[1])}")
            open_count, news = state
            assert restarts[-1].poll() is None, group.output(restarts[-1])[-3000:]
            assert set(news.values()) == {1}, "an order was made twice"
            assert open_count == total and set(news) == set(ids)
        finally:
            group.stop_all()
            client.close()


def _groups(client: RedisCluster, keys: Keys) -> object:
    try:
        return client.xinfo_groups(keys.order_intents()), client.scard(keys.open_orders())
    except (RedisClusterError, redis.RedisError) as e:
        return e


def _migrate_slot(slot: int, source_port: int, target_port: int, ports: list[int]) -> None:
    """Move one slot between masters as redis-cli --cluster reshard does: IMPORTING/MIGRATING, MIGRATE, NODE."""
    source, target = redis.Redis(port=source_port), redis.Redis(port=target_port)
    source_id, target_id = source.execute_command("CLUSTER MYID"), target.execute_command("CLUSTER MYID")
    target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    for port in ports:
        node = redis.Redis(port=port)
        try:
            if node.info("replication")["role"] == "master":
                node.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        finally:
            node.close()
    source.close()
    target.close()


@pytest.mark.timeout(120)
def test_slot_migration_mid_run_moves_keys_and_shard_channels(local_cluster: LocalCluster, cluster: RedisCluster,
                                                              tmp_path: Path) -> None:
    group = _stack(local_cluster.url, tmp_path)
    try:
        eventually(lambda: (st := _stamps(cluster)) and all(st.values()), timeout_s=60, message="stack up")
        source = cluster.get_node_from_key("tf:cache:{C00}")
        target = next(n for n in cluster.get_primaries() if n.port != source.port)
        _migrate_slot(slot_of("tf:cache:{C00}"), source.port, target.port, local_cluster.ports)
        moved_ns = time.time_ns()
        direct = redis.Redis(port=target.port, decode_responses=True)
        # the hub's HSET and the spotter's EVAL follow the slot (MOVED), and the spotter's SSUBSCRIBE too
        # (Redis sunsubscribes a moved slot's shard channels): C00's fair price is written on the new master
        eventually(lambda: int(direct.hget("tf:cache:{C00}", "fair_price:ts_ns") or 0) > moved_ns, timeout_s=30,
                   message="C00 served from its new master")
        eventually(lambda: (st := _stamps(cluster)) and all(ts > moved_ns for ts in st.values()), timeout_s=30,
                   message="every symbol still served")
        direct.close()
        for proc, _ in group.procs:
            assert proc.poll() is None, group.output(proc)[-3000:]
    finally:
        group.stop_all()


async def test_order_retention_on_the_cluster_stays_in_the_orders_slot(local_cluster: LocalCluster,
                                                                       cluster: RedisCluster) -> None:
    client = redis_client(local_cluster.url)  # the removal script's keys all carry {orders}: one node runs it
    try:
        # as every process does (wait_for_redis): redis-py's cluster MULTI discovers the slots in a thread
        # of its own, with connections bound to that thread's loop, if no command has done it before
        await client.ping()
        await check_retention(client, Keys("tf", cluster=True))
    finally:
        await client.aclose()


async def test_the_sim_broker_fills_resting_orders_from_sharded_quotes(local_cluster: LocalCluster,
                                                                       cluster: RedisCluster) -> None:
    """The hub SPUBLISHes on a cluster: a broker on classic PSUBSCRIBE saw no quote after an order's arrival,
    so a resting order never filled (and with a latency none filled at all). Orders come in three waves, so
    the feed's listener starts, then takes new masters, then more channels on a master it already watches."""
    keys = Keys("tf", cluster=True)
    by_master: dict[str, list[str]] = {}
    for symbol in SYMBOLS:
        by_master.setdefault(cluster.get_node_from_key(keys.cache(symbol)).name, []).append(symbol)
    first, second, third = (group[:2] for group in by_master.values())
    waves = [[first[0]], [second[0], third[0]], [first[1], second[1], third[1]]]
    async with sim_stack(local_cluster.url, keys=keys, sim=SimBrokerSettings(sim_latency_ns=1_000_000)) as stack:
        trading, ids = stack.trading(), []
        for wave in waves:
            for symbol in wave:  # the latest quotes the risk checks price against; no order follows them yet
                stack.publisher.add_quote(symbol, 1, 99.99, 100, 100.01, 100)
            await stack.publisher.flush()
            ids += [await trading.submit_limit(symbol, "buy", 1, "99") for symbol in wave]
            for coid in ids:
                await trading.wait_for(coid, {"new"})
            seen = stack.broker.quotes_seen
            stack.publisher.add_quote(wave[0], 1, 99.98, 100, 100.02, 100)  # reaches the listener as it now runs
            await stack.publisher.flush()
            await eventually_async(lambda seen=seen: _true(stack.broker.quotes_seen > seen), timeout_s=5,
                                   message="the broker to see a quote of the wave")
        symbols = [symbol for wave in waves for symbol in wave]
        assert stack.broker.followed == frozenset(symbols)
        for symbol in symbols:  # the ask comes down through every bid, on every master
            stack.publisher.add_quote(symbol, 1, 98.50, 100, 98.90, 100)
        await stack.publisher.flush()
        filled = [await trading.wait_for(coid, {"filled"}) for coid in ids]
        # at the touch where this quote is an order's first, at its limit where the wave's quote came first
        assert {o.symbol for o in filled} == set(symbols)
        assert {o.filled_avg_price for o in filled} <= {Decimal("98.9"), Decimal("99")}


async def _true(value: bool) -> bool:
    return value
