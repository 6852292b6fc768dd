"""``python -m hub.execution.cancel_all``: the operator's cancel-all of every agent's open orders.

It appends one ``cancel_all`` from sender ``operator`` to the operator stream
(``tf:orders:operator``); the gateway cancels every open order (of one symbol with
``--symbol``), whoever placed it. Agents cannot do this: on their stream the gateway
only cancels the sender's own orders and refuses the name ``operator``. With Redis
ACLs, only the operator role is given XADD on the operator stream. The kill switch
(``SET tf:risk:halt 1``) is the other way to empty the book, and also stops new orders.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from agents.trading import INTENTS_MAXLEN
from core import names
from core.connection import ProcessSettings, redis_client, wait_for_redis
from core.errors import ConfigError
from core.intents import OPERATOR, encode_intent
from core.keys import Keys
from core.orders import Intent
from core.process import config_failure, run_process
from core.settings import build, gather, option, pick

PROG = "python -m hub.execution.cancel_all"


@dataclass(frozen=True, kw_only=True)
class CancelAllSettings:
    symbol: str = option("", help="cancel only this symbol's orders (default: every symbol)")

    def __post_init__(self) -> None:
        if self.symbol and not names.is_symbol(self.symbol):
            raise ConfigError("setting 'symbol' must be 1-32 characters of A-Z 0-9 . - /")


async def send_cancel_all(client: aioredis.Redis, keys: Keys, symbol: str = "") -> str:
    """The one way an operator cancel-all is sent (this command and the dashboard's button): one XADD
    on the operator stream, trimmed like the agents' stream so it never grows without bound. Its id."""
    intent = Intent("cancel_all", OPERATOR, symbol=symbol, ts_ns=time.time_ns())
    entry_id = await client.xadd(keys.operator_intents(), encode_intent(intent), maxlen=INTENTS_MAXLEN,
                                 approximate=True)
    return str(entry_id)


async def send(process: ProcessSettings, settings: CancelAllSettings) -> None:
    client = redis_client(process.redis_spec)  # the spec: the password file and TLS options apply
    try:
        await wait_for_redis(client, process.redis_spec, process.redis_wait_ns)
        entry_id = await send_cancel_all(client, process.keys, settings.symbol)
        print(f"cancel-all of {settings.symbol or 'every symbol'} sent as {entry_id} "
              f"on {process.keys.operator_intents()}")
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    try:
        values = gather(argv, [ProcessSettings, CancelAllSettings], prog=PROG,
                        description=(__doc__ or "").splitlines()[0])
        process = build(ProcessSettings, pick(values, ProcessSettings))
        settings = build(CancelAllSettings, pick(values, CancelAllSettings))
    except ConfigError as e:
        return config_failure(PROG, e)
    return run_process(PROG, "WARNING", lambda stop: send(process, settings))


if __name__ == "__main__":
    sys.exit(main())
