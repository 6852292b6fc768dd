"""Strict settings: flags, env, file; unknown and bad settings named in the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.config import AgentSettings
from agents.spread_calculator import SpreadCalculator
from core.connection import ProcessSettings, redact_url
from core.errors import ConfigError
from core.settings import build, gather, parse_duration_ns, pick

CLASSES = [ProcessSettings, AgentSettings]


@pytest.mark.parametrize(("text", "expected_ns"), [
    ("500ms", 500_000_000), ("30s", 30_000_000_000), ("2m", 120_000_000_000), ("250us", 250_000),
    ("1.5s", 1_500_000_000), (2, 2_000_000_000), ("1h", 3_600_000_000_000)])
def test_durations(text: object, expected_ns: int) -> None:
    assert parse_duration_ns(text, "throttle") == expected_ns


@pytest.mark.parametrize("text", ["fast", "5 parsecs", "-1s", "", True])
def test_bad_duration_names_the_setting(text: object) -> None:
    with pytest.raises(ConfigError, match="'throttle'"):
        parse_duration_ns(text, "throttle")


def test_flags_override_env_override_file(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('instruments = ["msft"]\nthrottle = "2s"\nnamespace = "filens"\n')
    env = {"TF_THROTTLE": "1s", "TF_NAMESPACE": "envns"}
    values = gather(["--config", str(config), "--namespace", "flagns"], CLASSES, prog="t", description="",
                    environ=env)
    agent = build(AgentSettings, pick(values, AgentSettings))
    process = build(ProcessSettings, pick(values, ProcessSettings))
    assert agent.instruments == ("MSFT",)
    assert agent.throttle_ns == 1_000_000_000
    assert process.namespace == "flagns"


def test_unknown_flag_is_named() -> None:
    with pytest.raises(ConfigError, match="--throtle"):
        gather(["--throtle", "1s"], CLASSES, prog="t", description="", environ={})


def test_unknown_file_key_is_named(tmp_path: Path) -> None:
    config = tmp_path / "a.json"
    config.write_text(json.dumps({"instrumnets": "AAPL"}))
    with pytest.raises(ConfigError, match="instrumnets"):
        gather(["--config", str(config)], CLASSES, prog="t", description="", environ={})


def test_unreadable_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="setting 'config'"):
        gather(["--config", str(tmp_path / "missing.toml")], CLASSES, prog="t", description="", environ={})


def test_bad_choice_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'agent_type'.*event_driven"):
        build(AgentSettings, {"agent_type": "sometimes", "instruments": "AAPL"})


def test_event_driven_agent_needs_instruments() -> None:
    with pytest.raises(ConfigError, match="'instruments'"):
        build(AgentSettings, {})


def test_agent_rejects_unknown_config_key_and_bad_param() -> None:
    with pytest.raises(ConfigError, match="'windw'"):
        SpreadCalculator(config={"instruments": ["AAPL"], "windw": "5s"})
    with pytest.raises(ConfigError, match="'window'"):
        SpreadCalculator(config={"instruments": ["AAPL"], "window": "0s"})


def test_seed_config_dict_and_kwargs() -> None:
    agent = SpreadCalculator(config={"instruments": ["aapl", "MSFT"], "throttle": "30s", "window": "10s"},
                             agent_type="periodic")
    assert agent.instruments == ("AAPL", "MSFT")
    assert agent.settings.throttle_ns == 30_000_000_000
    assert agent.agent_type == "periodic"
    assert agent.params.window_ns == 10_000_000_000
    assert agent.name == "spread_calculator"


def test_redis_password_never_shown() -> None:
    settings = build(ProcessSettings, {"redis_url": "redis://user:hunter2@db:6380/1"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in settings.display_url
    assert redact_url("redis://:hunter2@db/0") == "redis://:***@db/0"
    assert redact_url("redis://u:p/w@d@db/0") == "redis://u:***@db/0"  # "/" and "@" in a password stay hidden
    with pytest.raises(ConfigError) as info:
        build(ProcessSettings, {"redis_url": "http://:hunter2@db/0"})
    assert "hunter2" not in str(info.value)
