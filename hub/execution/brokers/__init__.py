"""Brokers the gateway can send orders to: ``sim`` (fills against bus quotes) and ``alpaca``."""
