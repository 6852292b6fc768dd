"""Redis ACL users per role (core/acl.py, deploy/setup-redis-acl.sh): least rights, and the stack works with them."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.server import RedisServer, start_redis_server
from cache.data_cache import DataCache
from core.acl import ROLES, role_rules
from core.connection import redis_client
from core.exitcodes import ExitCode
from core.keys import PORTFOLIO, Keys
from tests.conftest import REPO, free_port
from tests.helpers import ProcessGroup, eventually
from tests.supervisor_stack import deploy_programs, program_section, supervised
from tests.test_order_retention import check_retention

KEYS = Keys()
STACK = ("hub", "gateway", "spotter", "quote_manager", "delta_hedger", "pnl", "dashboard")


@pytest.fixture(scope="module")
def var(tmp_path_factory: pytest.TempPathFactory) -> Path:
    var = tmp_path_factory.mktemp("var")
    env = {"VAR": str(var), "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(REPO / "deploy" / "setup-redis-acl.sh")], env=env, check=True, capture_output=True)
    return var


@pytest.fixture(scope="module")
def acl_server(var: Path) -> Iterator[RedisServer]:
    server = start_redis_server("--aclfile", str(var / "redis" / "users.acl"))
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def password(var: Path, role: str) -> str:
    return (var / "secrets" / f"{role}.password").read_text().strip()


@pytest.fixture
def as_role(acl_server: RedisServer, var: Path) -> Iterator[dict[str, redis.Redis]]:
    clients = {role: redis.Redis(port=acl_server.port, username=role, password=password(var, role),
                                 decode_responses=True) for role in ROLES}
    clients["admin"].flushall()
    clients["admin"].acl_log_reset()
    yield clients
    for client in clients.values():
        client.close()


def denied(client: redis.Redis, *command: str) -> bool:
    try:
        client.execute_command(*command)
    except redis.exceptions.NoPermissionError:
        return True
    except redis.exceptions.ResponseError as e:  # a refusal inside a script comes back as a script error
        return "can't run" in str(e) or "can't access" in str(e)
    return False


def test_setup_is_idempotent_private_and_keeps_no_cleartext(var: Path) -> None:
    before = {role: password(var, role) for role in ROLES}
    subprocess.run([sys.executable, "-m", "core.acl", "--var", str(var)], cwd=REPO, check=True, capture_output=True)
    assert {role: password(var, role) for role in ROLES} == before
    assert len(set(before.values())) == len(ROLES) and all(len(p) >= 40 for p in before.values())
    acl = var / "redis" / "users.acl"
    for path in (acl, *(var / "secrets").iterdir()):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((var / "secrets").stat().st_mode) == 0o700
    text = acl.read_text()
    assert not any(p in text for p in before.values())
    assert text.startswith("user default on #")  # a password, never nopass (see core.acl.render_acl)
    assert "nopass" not in text


def test_an_agent_cannot_halt_forge_exec_events_or_touch_orders(as_role: dict[str, redis.Redis]) -> None:
    agent = as_role["agent"]
    assert denied(agent, "SET", KEYS.risk_halt(), "1")
    assert denied(agent, "DEL", KEYS.risk_halt())
    assert denied(agent, "XADD", KEYS.order_events(), "*", "client_order_id", "x", "status", "filled")
    assert denied(agent, "PUBLISH", KEYS.exec_channel(), '{"status":"filled"}')
    assert denied(agent, "HSET", KEYS.order("alice-1"), "status", "canceled")
    assert denied(agent, "SREM", KEYS.open_orders(), "alice-1")
    assert denied(agent, "HSET", KEYS.position("AAPL"), "qty", "1000")
    assert denied(agent, "DEL", KEYS.order_intents())
    assert denied(agent, "XREADGROUP", "GROUP", "gateway", "x", "STREAMS", KEYS.order_intents(), ">")
    assert denied(agent, "EVAL", f"return redis.call('SET', '{KEYS.risk_halt()}', '1')", "0")
    assert denied(agent, "FLUSHALL")
    assert denied(agent, "CONFIG", "SET", "appendonly", "no")
    # ...while doing its job
    assert agent.xadd(KEYS.order_intents(), {"kind": "cancel_all", "agent": "spotter"})
    assert agent.hset(KEYS.cache("AAPL"), "fair_price", "1") == 1
    assert agent.publish(KEYS.cache_changed_channel("AAPL"), "x") == 0
    assert agent.get(KEYS.risk_halt()) is None and agent.hgetall(KEYS.order("alice-1")) == {}
    assert as_role["admin"].get(KEYS.risk_halt()) is None


def test_other_roles_have_only_their_rights(as_role: dict[str, redis.Redis], acl_server: RedisServer) -> None:
    hub, gateway, operator, dashboard = (as_role[r] for r in ("hub", "gateway", "operator", "dashboard"))
    assert denied(hub, "XADD", KEYS.order_intents(), "*", "kind", "submit")
    assert denied(hub, "SET", KEYS.risk_halt(), "1")
    assert hub.publish(KEYS.quote_channel("AAPL"), b"x") == 0
    assert denied(gateway, "SET", KEYS.risk_halt(), "1")  # the kill switch belongs to the operator
    assert denied(gateway, "HSET", KEYS.cache("AAPL"), "fair_price", "1")
    assert gateway.hset(KEYS.order("a-1"), "status", "new") == 1
    assert operator.set(KEYS.risk_halt(), "1") and operator.delete(KEYS.risk_halt()) == 1
    assert denied(operator, "HSET", KEYS.order("a-1"), "status", "filled")
    assert dashboard.hgetall(KEYS.order("a-1")) == {"status": "new"}
    assert denied(dashboard, "SET", KEYS.risk_halt(), "1")
    assert denied(dashboard, "PUBLISH", KEYS.exec_channel(), "x")
    anonymous = redis.Redis(port=acl_server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()


def test_rules_follow_the_namespace() -> None:
    rules = " ".join(role_rules("agent", Keys("alpha")))
    assert "~alpha:orders:intents +xadd" in rules and "tf:" not in rules


def _role_section(deploy: object, name: str, server: RedisServer, var: Path, tmp: Path) -> str:
    extra = f" --port {free_port()}" if name == "dashboard" else ""  # never the stack's 8050
    """The deploy file's program, keeping its Redis user, pointed at the test server and the test secrets."""
    options = dict(deploy.items(f"program:{name}"))  # type: ignore[attr-defined]
    user = re.search(r'REDIS_URL="redis://(\w+)@', options["environment"])
    assert user, f"program {name} has no Redis user in deploy/supervisord.conf"
    role = user.group(1)
    section = program_section(deploy, name, f"redis://{role}@127.0.0.1:{server.port}/0", tmp,  # type: ignore[arg-type]
                              extra_args=extra)
    return section.replace('PYTHONUNBUFFERED="1"',
                           f'PYTHONUNBUFFERED="1",REDIS_PASSWORD_FILE="{var / "secrets" / f"{role}.password"}"')


def test_the_stack_runs_with_role_users_and_no_password_on_any_command_line(
        acl_server: RedisServer, var: Path, as_role: dict[str, redis.Redis], tmp_path: Path) -> None:
    deploy = deploy_programs()
    admin = as_role["admin"]
    with supervised([_role_section(deploy, name, acl_server, var, tmp_path) for name in STACK], tmp_path,
                    stop_timeout_s=60) as supervisor:
        eventually(lambda: [k for k in admin.scan_iter(match=KEYS.order_pattern())
                            if admin.hget(k, "status") == "filled"], timeout_s=40, message="a filled order")
        eventually(lambda: admin.hget(KEYS.cache(PORTFOLIO), "pnl_total"), timeout_s=30, message="PnL marked")
        eventually(lambda: admin.hget(KEYS.cache("AAPL"), "fair_price"), message="fair price")
        as_role["operator"].set(KEYS.risk_halt(), "1")  # the operator's kill switch reaches the gateway
        eventually(lambda: admin.hget(KEYS.gateway("gateway"), "halted") == "1", message="gateway halted")
        pids = [info["pid"] for info in supervisor.rpc.supervisor.getAllProcessInfo()]
        assert len(pids) == len(STACK) and all(pids)
        secrets = [password(var, role) for role in ROLES]
        for pid in pids:
            cmdline = Path(f"/proc/{pid}/cmdline").read_text()
            assert not any(secret in cmdline for secret in secrets), cmdline
        assert admin.acl_log() == [], admin.acl_log()  # no right the stack needs is missing
        supervisor.process.terminate()
        assert supervisor.process.wait(60) == 0


def test_status_runs_as_the_operator(processes: ProcessGroup, acl_server: RedisServer, var: Path,
                                     as_role: dict[str, redis.Redis]) -> None:
    result = processes.run("-m", "hub.status", env={
        "REDIS_URL": f"redis://dashboard@127.0.0.1:{acl_server.port}/0",
        "REDIS_PASSWORD_FILE": str(var / "secrets" / "dashboard.password")})
    assert result.returncode == ExitCode.OK, result.stderr
    assert as_role["admin"].acl_log() == []


async def test_data_cache_reads_the_password_file_from_the_environment(
        acl_server: RedisServer, var: Path, as_role: dict[str, redis.Redis], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(var / "secrets" / "agent.password"))
    cache = DataCache(f"redis://agent@127.0.0.1:{acl_server.port}/0")
    try:
        await cache.set("AAPL", "fair_price", 101.5)  # the lean EVAL writer and redis-py, both as 'agent'
        assert await cache.get("AAPL", "fair_price") == 101.5
    finally:
        await cache.aclose()
    assert as_role["admin"].hget(KEYS.cache("AAPL"), "fair_price") == "101.5"


async def test_the_gateway_role_may_remove_ended_orders(acl_server: RedisServer, var: Path,
                                                        as_role: dict[str, redis.Redis]) -> None:
    client = redis_client(f"redis://gateway:{password(var, 'gateway')}@127.0.0.1:{acl_server.port}/0")
    try:
        await check_retention(client, KEYS)  # SCAN, the removal script (HMGET, SISMEMBER, UNLINK)
    finally:
        await client.aclose()
    assert as_role["admin"].acl_log() == []
