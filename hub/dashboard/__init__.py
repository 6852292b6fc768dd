"""The live web dashboard and Prometheus exporter (``python -m hub.dashboard``).

Modules: ``settings`` (flags, the control token), ``state`` (what the dashboard
knows, in memory), ``reader`` (the one background Redis reader), ``view`` (JSON
for the page), ``metrics`` (the Prometheus collector), ``control`` (the guarded
kill switch and cancel-all), ``web`` (the Starlette app) and ``app`` (the process).
"""
