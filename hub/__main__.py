"""``python -m hub --source sim --symbols AAPL,MSFT``: stream quotes onto Redis."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.errors import ConfigError
from core.process import config_failure, run_process
from core.settings import gather
from hub.marketdata.app import hub_config, run_hub, settings_classes

PROG = "python -m hub"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = hub_config(gather(argv, settings_classes(), prog=PROG,
                                   description="Stream market data onto Redis pub/sub."))
    except ConfigError as e:
        return config_failure(PROG, e)
    return run_process(PROG, config.process.log_level, lambda stop: run_hub(config, stop))


if __name__ == "__main__":
    sys.exit(main())
