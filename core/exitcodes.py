"""Process exit codes, chosen so supervisord can tell "fix me" from "retry me".

``deploy/supervisord.conf`` lists the "do not restart" codes in ``exitcodes``
and runs every program with ``autorestart=unexpected``.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: Redis lost or unreachable: transient, supervisord restarts the process.
    REDIS_UNAVAILABLE = 69
    #: An unexpected exception: a bug; restarting is the best we can do.
    SOFTWARE = 70
    #: Alpaca 406 outlasted the grace window; restarting would only hold the slot longer.
    CONNECTION_LIMIT = 75
    #: A live process already runs under this name; a restart would be refused again.
    DUPLICATE = 76
    #: Credentials or subscription refused by the provider: needs a human.
    PROVIDER_REFUSED = 77
    #: A setting is wrong: needs a human.
    CONFIG = 78
    #: Interrupted by a second signal.
    INTERRUPTED = 130


#: Codes after which supervisord must not restart the program.
NO_RESTART = (ExitCode.OK, ExitCode.CONNECTION_LIMIT, ExitCode.DUPLICATE,
              ExitCode.PROVIDER_REFUSED, ExitCode.CONFIG)
