"""``python -m hub.execution --broker sim|alpaca``: the execution gateway."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.errors import ConfigError
from core.process import config_failure, run_process
from core.settings import gather
from hub.execution.app import gateway_config, run_gateway, settings_classes

PROG = "python -m hub.execution"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = gateway_config(gather(argv, settings_classes(), prog=PROG,
                                       description="Risk-check order intents and send them to a broker."))
    except ConfigError as e:
        return config_failure(PROG, e)
    return run_process(PROG, config.process.log_level, lambda stop: run_gateway(config, stop))


if __name__ == "__main__":
    sys.exit(main())
