"""A local stand-in for Alpaca's trading API (REST v2 + trade_updates websocket), for tests.

``python -m tests.alpaca_trading_server --port 8801 --ws-port 8802`` prints
``READY rest=... ws=...`` once both listen. Orders fill only when a test asks
(POST /test/fill), so tests control every execution.
"""
