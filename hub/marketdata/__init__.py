"""The market-data process (``python -m hub``): sources, the publisher and recordings."""
