"""The shared library every package imports: wire codec, Redis names, settings, connections, errors.

Nothing in ``core`` imports from ``cache``, ``agents`` or ``hub``; see docs/architecture.md.
"""
