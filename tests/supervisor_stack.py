"""deploy/supervisord.conf's programs under a real supervisord, against the suite's Redis.

The programs' options come from the deploy file itself; only paths, the Redis
address (the suite's own, never 6379) and the set of programs differ.
"""

from __future__ import annotations

import configparser
import contextlib
import subprocess
import sys
import xmlrpc.client
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from tests.conftest import REPO
from tests.helpers import eventually

DEPLOY = REPO / "deploy" / "supervisord.conf"


def deploy_programs() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser()
    parser.read(DEPLOY)
    return parser


def program_section(deploy: configparser.RawConfigParser, name: str, redis_url: str, tmp: Path,
                    extra_args: str = "", as_name: str | None = None) -> str:
    """The deploy file's ``[program:<name>]``, pointed at this interpreter, the repo and ``redis_url``."""
    options = dict(deploy.items(f"program:{name}"))
    options["command"] = (options["command"].replace("%(here)s/../.venv/bin/python", sys.executable)
                          + extra_args)
    options["environment"] = f'REDIS_URL="{redis_url}",PYTHONPATH="{REPO}",PYTHONUNBUFFERED="1"'
    options["stdout_logfile"] = str(tmp / f"{as_name or name}.log")
    options["directory"] = str(REPO)
    body = "\n".join(f"{key}={value}" for key, value in options.items())
    return f"[program:{as_name or name}]\n{body}\n"


@dataclass(frozen=True)
class Supervisor:
    rpc: Any  # xmlrpc proxy: rpc.supervisor.getProcessInfo(name) ...
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def supervised(programs: Sequence[str], tmp: Path, stop_timeout_s: float = 30) -> Iterator[Supervisor]:
    """Run supervisord with the given program sections until the block ends."""
    sock = tmp / "supervisor.sock"
    conf = tmp / "supervisord.conf"
    conf.write_text("\n".join([
        f"[unix_http_server]\nfile={sock}\n",
        f"[supervisord]\nlogfile={tmp}/supervisord.log\npidfile={tmp}/supervisord.pid\n"
        f"childlogdir={tmp}\nnodaemon=true\n",
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
        *programs,
    ]))
    proc = subprocess.Popen([str(Path(sys.executable).parent / "supervisord"), "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = xmlrpc.client.ServerProxy("http://127.0.0.1", SupervisorTransport(None, None, f"unix://{sock}"))
    try:
        eventually(lambda: sock.exists(), message="supervisord socket")
        yield Supervisor(server, proc)
    finally:
        server("close")()  # closes the transport's unix socket
        proc.terminate()
        proc.wait(stop_timeout_s)
