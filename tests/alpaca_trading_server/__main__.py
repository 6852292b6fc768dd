"""``python -m tests.alpaca_trading_server --port N [--ws-port M] [--key K --secret S]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tests.alpaca_trading_server.server import serve_forever


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.alpaca_trading_server")
    parser.add_argument("--port", type=int, default=0, help="REST port (0: any free port)")
    parser.add_argument("--ws-port", type=int, default=0, help="trade_updates websocket port (0: any free port)")
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--secret", default="test-secret")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args.port, args.ws_port, args.key, args.secret))


if __name__ == "__main__":
    main()
