"""``python -m agents.<name>``: run one agent as its own process."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agents.base import TradingAgent
from agents.config import AgentSettings
from agents.serve import serve_agents
from agents.sharding import is_sharded, serve_sharded
from cache import DataCache
from core.connection import ProcessSettings
from core.errors import ConfigError
from core.process import config_failure, run_process
from core.settings import build, gather, option_specs, pick


def agent_main(agent_cls: type[TradingAgent], argv: Sequence[str] | None = None) -> int:
    """Parse flags, env (``TF_<SETTING>``) and ``--config FILE``; run the agent until SIGTERM."""
    prog = _program_name(agent_cls)
    try:
        values = gather(argv, [ProcessSettings, AgentSettings, agent_cls.Params], prog=prog,
                        description=(agent_cls.__doc__ or "").strip().splitlines()[0] if agent_cls.__doc__ else "",
                        defaults=agent_cls.defaults)
        process = build(ProcessSettings, pick(values, ProcessSettings))
        process_keys = {spec.key for spec in option_specs(ProcessSettings)}
        config = {k: v for k, v in values.items() if k not in process_keys}
        agent = agent_cls(config=config, data_cache=DataCache(namespace=process.namespace))
    except ConfigError as e:
        return config_failure(prog, e)
    if is_sharded(agent):
        return run_process(prog, process.log_level, lambda stop: serve_sharded(agent, process, stop))
    return run_process(prog, process.log_level, lambda stop: serve_agents([agent], process, stop))


def _program_name(agent_cls: type[TradingAgent]) -> str:
    """``python -m agents.spotter`` even when the module runs as ``__main__``."""
    module = agent_cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        return f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return f"python -m {module}"


def run_agent_module(agent_cls: type[TradingAgent]) -> None:
    sys.exit(agent_main(agent_cls))
