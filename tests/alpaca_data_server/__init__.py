"""A local stand-in for Alpaca's market-data services, speaking Alpaca's protocols.

- :class:`AlpacaDataServer`: the websocket stream (``wss://stream.data.alpaca.markets/v2/iex``).
- :class:`ServerThread`: runs one on its own loop in a thread, for synchronous tests.
- :class:`HistoryServer`: the historical quotes REST API (``/v2/stocks/quotes``).

From the command line: ``python -m tests.alpaca_data_server --port 8765 --rate 1000``.
"""

from tests.alpaca_data_server.rest import HistoryServer
from tests.alpaca_data_server.server import AlpacaDataServer
from tests.alpaca_data_server.thread import ServerThread

__all__ = ["AlpacaDataServer", "HistoryServer", "ServerThread"]
