"""Orders: the execution gateway, pre-trade risk, order state and the brokers (issue 4).

``python -m hub.execution --broker sim|alpaca`` runs the gateway; agents reach it
through :class:`agents.trading.TradingClient`. See docs/execution.md.
"""
