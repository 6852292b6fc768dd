"""``python -m tests.alpaca_data_server --port 8765 --rate 1000``: a local Alpaca market-data stream for demos.

Point the hub at it::

    APCA_API_KEY_ID=key APCA_API_SECRET_KEY=secret APCA_DATA_STREAM_URL=ws://127.0.0.1:8765/v2/iex \\
        python -m hub --source alpaca --symbols AAPL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from tests.alpaca_data_server.server import AlpacaDataServer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.alpaca_data_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate", default="100", help="quotes per second over all subscribed symbols, or 'max' "
                                                       "(pre-encoded frames as fast as the client reads)")
    parser.add_argument("--batch", type=int, default=500, help="most quotes per frame")
    parser.add_argument("--key", default="key", help="accepted API key ('' accepts any key and secret)")
    parser.add_argument("--secret", default="secret", help="accepted API secret")
    parser.add_argument("--symbol-limit", type=int, default=0, help="405 above this many symbols (0: no limit)")
    parser.add_argument("--reject-406", type=float, default=0.0, help="answer auth with 406 for this many seconds")
    parser.add_argument("--no-sip", action="store_true", help="refuse /v2/sip with 409 insufficient subscription")
    return parser.parse_args()


async def serve(args: argparse.Namespace) -> None:
    server = AlpacaDataServer(args.host, args.port, credentials={args.key: args.secret} if args.key else {},
                              symbol_limit=args.symbol_limit, sip_allowed=not args.no_sip)
    await server.start()
    if args.reject_406:
        server.reject_406_for(args.reject_406)
    if args.rate == "max":
        server.start_blast(args.batch)
    elif float(args.rate) > 0:
        server.start_stream(float(args.rate), args.batch)
    logging.info("serving Alpaca market data on %s (and /v2/sip, /v1beta3/crypto/us)", server.url())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop()
    logging.info("stopped after %d connections and %d quotes", server.connections, server.quotes_sent)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(parse_args()))
