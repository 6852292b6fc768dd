"""Redis URL, credentials and database errors are configuration errors: exit 78, one line, no secret shown."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.server import RedisServer, start_redis_server
from core.connection import ProcessSettings, redact_url
from core.errors import ConfigError
from core.exitcodes import ExitCode
from core.redis_spec import RedisSpec, parse_redis_url, spec_from_redis_py_kwargs
from core.resp import RespConnection
from core.settings import build
from tests.helpers import ProcessGroup, eventually

SECRET = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = start_redis_server("--requirepass", SECRET)
    yield server
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def _password_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "redis.password"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


# --- the spec, as a pure function -------------------------------------------------------------

def test_spec_repr_and_display_never_show_the_password() -> None:
    spec = parse_redis_url(f"redis://alice:{SECRET}@db.example:6380/3")
    assert SECRET not in repr(spec) and SECRET not in spec.display
    assert spec.display == "redis://alice:***@db.example:6380/3"
    assert (spec.host, spec.port, spec.db, spec.username, spec.password) == ("db.example", 6380, 3, "alice", SECRET)
    settings = build(ProcessSettings, {"redis_url": f"redis://:{SECRET}@h/0"})
    assert SECRET not in repr(settings) and SECRET not in settings.display_url
    assert redact_url(f"redis://u:{SECRET}@h:99999999/0") == "redis://u:***@h:99999999/0"  # even unparseable


@pytest.mark.parametrize("spec", [
    RedisSpec(),
    RedisSpec(scheme="unix", path="/run/redis.sock", db=2, password="x"),
    RedisSpec(scheme="rediss", host="r", port=6380, username="u", password="p", ssl_ca_certs="/ca.pem",
              ssl_certfile="/c.pem", ssl_keyfile="/c.key", ssl_cert_reqs="optional", ssl_check_hostname=False,
              connect_timeout_s=2.5),
])
def test_redis_py_kwargs_round_trip_to_the_same_spec(spec: RedisSpec) -> None:
    """The lean client reads a foreign redis-py client back through this inverse: it must not drift."""
    assert spec_from_redis_py_kwargs(spec.redis_py_kwargs(), tls=spec.tls) == spec


@pytest.mark.parametrize(("url", "fragment"), [
    ("redis://127.0.0.1:6379/0?foo=1", "unknown URL option 'foo'"),
    ("redis://127.0.0.1:6379/99999", "database '99999'"),
    ("redis://127.0.0.1:6379/x", "database 'x'"),
    ("redis://127.0.0.1:99999999/0", "not a valid Redis URL"),
    ("http://127.0.0.1/0", "scheme 'http'"),
    ("redis://h/0?ssl_ca_certs=/etc/hosts", "need a rediss:// URL"),
    ("rediss://h/0?ssl_ca_certs=/no/such.pem", "not a readable file"),
    ("rediss://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ("unix://", "socket path"),
    ("redis+cluster://u:se/cret@h:1,h2:2/", "percent-encode"),  # no part of the password shown as a host
    ("redis+sentinel://u:se?cret@h:1/mymaster", "percent-encode"),
])
def test_bad_urls_are_config_errors_naming_the_fix(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment) as refused:
        parse_redis_url(url)
    assert "cret" not in str(refused.value)


def test_password_file_must_be_private(tmp_path: Path) -> None:
    path = _password_file(tmp_path, SECRET, mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600") as caught:
        build(ProcessSettings, {"redis_password_file": str(path)})
    assert SECRET not in str(caught.value)
    path.chmod(0o600)
    settings = build(ProcessSettings, {"redis_password_file": str(path), "redis_url": "redis://hub@h/0"})
    assert settings.redis_spec.password == SECRET and settings.redis_spec.username == "hub"


# --- real processes ----------------------------------------------------------------------------

def _assert_config_exit(result: object, *fragments: str) -> None:
    returncode, stderr = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert returncode == ExitCode.CONFIG, stderr
    assert "Traceback" not in stderr and SECRET not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def test_wrong_password_exits_78_without_showing_it(processes: ProcessGroup, password_server: RedisServer,
                                                    tmp_path: Path) -> None:
    wrong = _password_file(tmp_path, "not-" + SECRET)
    result = processes.run("-m", "agents.spotter", "--instruments", "AAPL", "--redis-password-file", str(wrong),
                           env={"REDIS_URL": password_server.url})
    _assert_config_exit(result, "refused the credentials", "--redis-password-file")


def test_missing_password_exits_78(processes: ProcessGroup, password_server: RedisServer) -> None:
    result = processes.run("-m", "hub", "--symbols", "AAPL", env={"REDIS_URL": password_server.url})
    _assert_config_exit(result, "refused the credentials")


def test_password_in_the_url_is_never_logged(processes: ProcessGroup, password_server: RedisServer) -> None:
    url = password_server.url.replace("redis://", f"redis://:{SECRET}x@")
    result = processes.run("-m", "hub.execution", "--broker", "sim", env={"REDIS_URL": url})
    _assert_config_exit(result, ":***@")


def test_password_file_connects_and_the_command_line_shows_no_secret(
        processes: ProcessGroup, password_server: RedisServer, tmp_path: Path) -> None:
    path = _password_file(tmp_path, SECRET)
    agent = processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--name", "pw-spotter",
                            "--redis-password-file", str(path), env={"REDIS_URL": password_server.url})
    client = redis.Redis(port=password_server.port, password=SECRET, decode_responses=True)
    try:
        eventually(lambda: client.exists("tf:agent:pw-spotter") or agent.poll() is not None, timeout_s=15,
                   message="the agent registered")
        assert agent.poll() is None, processes.output(agent)
        cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline
    finally:
        client.close()


def test_unknown_url_option_exits_78_before_any_io(processes: ProcessGroup) -> None:
    result = processes.run("-m", "hub", "--symbols", "AAPL", env={"REDIS_URL": "redis://127.0.0.1:1/0?bogus=1"})
    _assert_config_exit(result, "unknown URL option 'bogus'")


def test_huge_database_number_exits_78_before_any_io(processes: ProcessGroup) -> None:
    result = processes.run("-m", "agents.spotter", "--instruments", "AAPL",
                           env={"REDIS_URL": "redis://127.0.0.1:1/99999"})
    _assert_config_exit(result, "database '99999'")


def test_database_the_server_lacks_exits_78(processes: ProcessGroup, redis_url: str) -> None:
    result = processes.run("-m", "hub", "--symbols", "AAPL", env={"REDIS_URL": redis_url.rsplit("/", 1)[0] + "/20"})
    _assert_config_exit(result, "no database 20")


@pytest.mark.parametrize("program", [("hub", "--symbols", "AAPL"), ("agents.spotter", "--instruments", "AAPL"),
                                     ("hub.execution", "--broker", "sim")])
def test_unreachable_redis_says_it_is_waiting_at_once_and_stops_when_told(processes: ProcessGroup,
                                                                           program: tuple[str, ...]) -> None:
    proc = processes.start("-m", *program, "--redis-wait", "30s", env={"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"})
    # well inside the 30 s wait: the line comes first, not at the deadline
    eventually(lambda: "waiting for Redis at redis://:***@127.0.0.1:1/0" in processes.output(proc), timeout_s=10,
               message="the waiting line")
    assert SECRET not in processes.output(proc)
    proc.terminate()  # a stop while Redis is away is a clean exit, not a wait to the deadline
    assert proc.wait(10) == 0


@pytest.mark.parametrize(("url_tail", "fix"), [(":not-the-password@{host}/0", "--redis-password-file"),
                                               (":" + SECRET + "@{host}/99", "0..15")])
async def test_the_lean_client_names_the_fix_for_a_refusal(password_server: RedisServer, url_tail: str,
                                                          fix: str) -> None:
    """The hub's publisher (core.resp) words a refusal as redis-py's clients do (core.refusals), naming the fix."""
    spec = parse_redis_url("redis://" + url_tail.format(host=f"127.0.0.1:{password_server.port}"))
    with pytest.raises(ConfigError) as refused:
        await RespConnection.open(spec)
    assert fix in str(refused.value)
    assert SECRET not in str(refused.value) and "not-the-password" not in str(refused.value)
