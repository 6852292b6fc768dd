"""Real processes: ``python -m hub`` and ``python -m agents.spotter`` against the suite's Redis."""

from __future__ import annotations

import signal
import subprocess

import redis

from core.exitcodes import ExitCode
from tests.conftest import free_port
from tests.helpers import ProcessGroup, eventually


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def test_hub_and_spotter_fill_quotes_and_fair_price(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    hub = processes.start("-m", "hub", "--source", "sim", "--symbols", "AAPL,MSFT", "--sim-rate", "500",
                          "--sim-seed", "7")
    spotter = processes.start("-m", "agents.spotter", "--instruments", "AAPL,MSFT", "--throttle", "50ms")
    eventually(lambda: sync_redis.hget("tf:cache:MSFT", "fair_price"), message="MSFT fair_price")
    quote = sync_redis.hgetall("tf:quote:AAPL")
    assert float(quote["bid"]) < float(quote["ask"]) and int(quote["ts_ns"]) > 0
    fair = float(eventually(lambda: sync_redis.hget("tf:cache:AAPL", "fair_price")))
    assert 0 < fair < 10_000
    heartbeat = eventually(lambda: _runs_at_least(sync_redis, "tf:agent:spotter", 5), message="spotter runs")
    assert heartbeat["errors"] == "0" and int(heartbeat["pid"]) == spotter.pid
    assert sync_redis.hget("tf:hub:hub", "source") == "sim"
    spotter.send_signal(signal.SIGTERM)
    assert spotter.wait(10) == ExitCode.OK
    assert not sync_redis.exists("tf:agent:spotter")  # deregistered on the way out
    hub.send_signal(signal.SIGTERM)
    assert hub.wait(10) == ExitCode.OK


def _runs_at_least(client: redis.Redis, key: str, runs: int) -> dict[str, str] | None:
    fields: dict[str, str] = client.hgetall(key)
    return fields if int(fields.get("runs", 0)) >= runs else None


def test_garbage_on_the_channel_is_counted_and_the_agent_keeps_running(
        processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--symbols", "AAPL", "--sim-rate", "200")
    spotter = processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--throttle", "10ms")
    eventually(lambda: _runs_at_least(sync_redis, "tf:agent:spotter", 1), message="first run")
    for _ in range(3):
        sync_redis.publish("tf:md:quote:AAPL", "garbage")
    eventually(lambda: sync_redis.hget("tf:agent:spotter", "bad_messages") == "3", message="3 bad messages")
    runs = int(sync_redis.hget("tf:agent:spotter", "runs"))
    eventually(lambda: _runs_at_least(sync_redis, "tf:agent:spotter", runs + 5), message="still running")
    assert alive(spotter)
    output = processes.output(spotter)
    assert output.count("skipped a bad message") == 1  # rate-limited: one line, not three


def test_agent_asks_hub_for_a_symbol_it_is_not_streaming(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--symbols", "AAPL", "--sim-rate", "300")
    eventually(lambda: sync_redis.exists("tf:quote:AAPL"), message="hub streaming")
    processes.start("-m", "agents.spotter", "--instruments", "NVDA", "--throttle", "20ms")
    eventually(lambda: sync_redis.hget("tf:cache:NVDA", "fair_price"), message="NVDA added without restart")
    eventually(lambda: "NVDA" in sync_redis.hget("tf:hub:hub", "symbols").split(","), message="hub heartbeat")


def test_bad_config_exits_78_with_one_line_naming_the_setting(processes: ProcessGroup) -> None:
    result = processes.run("-m", "agents.spotter", "--instruments", "AAPL", "--throttle", "fast")
    assert result.returncode == ExitCode.CONFIG
    assert "'throttle'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = processes.run("-m", "agents.spotter", "--instrument", "AAPL")
    assert result.returncode == ExitCode.CONFIG and "--instrument" in result.stderr
    result = processes.run("-m", "hub", "--source", "nowhere")
    assert result.returncode == ExitCode.CONFIG and "'source'" in result.stderr


def test_unreachable_redis_exits_69_with_one_line(processes: ProcessGroup) -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    result = processes.run("-m", "agents.spotter", "--instruments", "AAPL", "--redis-wait", "300ms",
                           env={"REDIS_URL": url})
    assert result.returncode == ExitCode.REDIS_UNAVAILABLE
    assert "s3cret" not in result.stderr
    # one line saying it waits (at once, not after the deadline), one line for the error
    waiting, error = result.stderr.strip().splitlines()
    assert "waiting for Redis at redis://:***@" in waiting and "cannot reach Redis" in error


def test_second_agent_with_the_same_name_exits_76(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    first = processes.start("-m", "agents.spotter", "--instruments", "AAPL")
    eventually(lambda: sync_redis.exists("tf:agent:spotter"), message="first agent up")
    result = processes.run("-m", "agents.spotter", "--instruments", "AAPL")
    assert result.returncode == ExitCode.DUPLICATE
    assert alive(first)
    assert sync_redis.hget("tf:agent:spotter", "pid") == str(first.pid)


def test_killed_agent_name_is_reclaimed_at_once(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    first = processes.start("-m", "agents.spotter", "--instruments", "AAPL")
    eventually(lambda: sync_redis.exists("tf:agent:spotter"), message="first agent up")
    first.kill()
    first.wait()
    second = processes.start("-m", "agents.spotter", "--instruments", "AAPL")
    eventually(lambda: sync_redis.hget("tf:agent:spotter", "pid") == str(second.pid), message="takeover")


def test_namespaces_keep_two_stacks_apart(processes: ProcessGroup, sync_redis: redis.Redis) -> None:
    processes.start("-m", "hub", "--symbols", "AAPL", "--namespace", "blue", "--name", "bluehub")
    processes.start("-m", "agents.spotter", "--instruments", "AAPL", "--namespace", "blue")
    eventually(lambda: sync_redis.hget("blue:cache:AAPL", "fair_price"), message="blue stack")
    assert not sync_redis.exists("tf:cache:AAPL", "tf:quote:AAPL")
