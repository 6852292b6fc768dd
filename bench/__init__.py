"""Benchmarks of the framework beside bare redis-py and a raw RESP client; ``python -m bench``."""
