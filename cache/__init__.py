"""The shared DataCache: per-instrument derived state in Redis hashes."""

from cache.data_cache import CacheEntry, DataCache

__all__ = ["CacheEntry", "DataCache"]
