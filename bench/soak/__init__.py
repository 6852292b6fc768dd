"""The soak: the `make run` market-making stack on the sim market for a long time (``python -m bench.soak``).

Every 10 s it samples each process's RSS and CPU, the agents' lag and Redis's memory into a CSV;
at the end it checks that no order was lost and that no process's memory grew by more than the
allowed rate after warm-up, and draws the samples into a PNG. See docs/performance.md (Soak).
"""
