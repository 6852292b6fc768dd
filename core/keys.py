"""Every Redis name the framework uses, in one place.

Nothing else in the code base builds a key or channel string. All names live
under a namespace (default ``tf``) so two strategies can share one Redis.

Layout (namespace ``tf``):

====================================  =========  ======================================
name                                  type       contents
====================================  =========  ======================================
``tf:md:quote:<SYMBOL>``              pub/sub    msgpack quote batches (see core.codec)
``tf:md:trade:<SYMBOL>``              pub/sub    msgpack trade batches
``tf:quote:<SYMBOL>``                 hash       latest quote, human-readable
``tf:cache:<SYMBOL>``                 hash       derived state (``fair_price`` ...)
``tf:cache:portfolio``                hash       portfolio totals (``pnl_total`` ...)
``tf:cache:changed:<SYMBOL>``         pub/sub    msgpack list of changed cache fields
``tf:agent:<NAME>``                   hash       agent heartbeat (expires)
``tf:hub:<NAME>``                     hash       hub heartbeat (expires)
``tf:symbols:wanted``                 set        symbols agents asked for (lapse with their heartbeats)
``tf:ctl:symbols``                    pub/sub    "demand changed" notifications
``tf:orders:intents``                 stream     order intents (consumer group)
``tf:orders:events``                  stream     execution events
``tf:md:exec``                        pub/sub    execution events, for fast reaction
``tf:order:<CLIENT_ORDER_ID>``        hash       order state
``tf:orders:open``                    set        client order ids still working
``tf:position:<SYMBOL>``              hash       position, avg price, realized PnL
``tf:risk:halt``                      string     kill switch: any value halts trading
``tf:risk:reduce_only``               string     any value: only position-reducing orders
``tf:risk:order_bucket``               hash       order-rate token bucket (tokens, ts_us; expires)
``tf:risk:broker_bucket``              hash       broker request-rate token bucket (expires)
``tf:gateway:<NAME>``                 hash       gateway heartbeat (expires)
``tf:members:<GROUP>``                zset       sharded agents' member ids, score = lease end (ms)
``tf:leader:<NAME>``                  string     leader lock of a hub name (instance id, PX lease)
====================================  =========  ======================================

On a Redis Cluster (``Keys(cluster=True)``, set from a ``redis+cluster://`` URL) per-instrument
names carry the symbol as a hash tag (``tf:quote:{AAPL}``, ``tf:cache:{AAPL}``,
``tf:md:quote:{AAPL}``) and execution names share one tag: ``tf:{orders}:intents``,
``tf:{orders}:events``, ``tf:{orders}:open``, ``tf:{orders}:order:<ID>``, ``tf:{orders}:position:<SYM>``,
``tf:{orders}:risk:halt`` and ``tf:{orders}:risk:reduce_only`` (read together with one MGET).
Single-node names are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.names import check_name

DEFAULT_NAMESPACE = "tf"
#: The DataCache "instrument" holding portfolio-wide values (``tf:cache:portfolio``). Lower case:
#: symbols are upper-cased (core.names), so no symbol's ``tf:cache:<SYMBOL>`` can be this key.
PORTFOLIO = "portfolio"
#: Where portfolio totals lived before: now the cache of the symbol PORTFOLIO (agents.pnl migrates).
LEGACY_PORTFOLIO = "PORTFOLIO"
#: Suffix of the field holding a cache field's write time (``fair_price:ts_ns``).
CACHE_TS_SUFFIX = ":ts_ns"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names under one namespace."""

    namespace: str = DEFAULT_NAMESPACE
    #: On a Redis Cluster every per-instrument name carries a hash tag (``tf:cache:{AAPL}``), so one
    #: instrument's keys and channels share a slot; single-node names stay as they were (``tf:cache:AAPL``).
    cluster: bool = False

    def __post_init__(self) -> None:
        check_name(self.namespace, "namespace")  # every key starts with it: core.names' rule

    def _name(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def _sym(self, symbol: str) -> str:
        return f"{{{symbol}}}" if self.cluster else symbol

    # market data
    def quote_channel(self, symbol: str) -> str:
        return self._name("md", "quote", self._sym(symbol))

    def quote_channel_pattern(self) -> str:
        return self._name("md", "quote", "*")

    def trade_channel(self, symbol: str) -> str:
        return self._name("md", "trade", self._sym(symbol))

    def quote_prefix(self) -> str:
        return self._name("md", "quote", "")

    def latest_quote(self, symbol: str) -> str:
        return self._name("quote", self._sym(symbol))

    # derived state
    def cache(self, symbol: str) -> str:
        return self._name("cache", self._sym(symbol))

    def cache_pattern(self) -> str:
        return self._name("cache", "*")

    def cache_prefix(self) -> str:
        """``tf:cache:`` (before the symbol or its ``{tag}``; see :meth:`symbol_from`)."""
        return self._name("cache", "")

    def latest_quote_prefix(self) -> str:
        return self._name("quote", "")

    def cache_changed_channel(self, symbol: str) -> str:
        return self._name("cache", "changed", self._sym(symbol))

    def cache_changed_prefix(self) -> str:
        return self._name("cache", "changed", "")

    # processes
    def agent(self, name: str) -> str:
        return self._name("agent", name)

    def agent_pattern(self) -> str:
        return self._name("agent", "*")

    def hub(self, name: str) -> str:
        return self._name("hub", name)

    def hub_pattern(self) -> str:
        return self._name("hub", "*")

    def gateway(self, name: str) -> str:
        return self._name("gateway", name)

    def gateway_pattern(self) -> str:
        return self._name("gateway", "*")

    # sharded agents and standby hubs
    def agent_members(self, group: str) -> str:
        return self._name("members", group)

    def hub_leader(self, name: str) -> str:
        return self._name("leader", name)

    # symbol demand
    def wanted_symbols(self) -> str:
        return self._name("symbols", "wanted")

    def symbols_control_channel(self) -> str:
        return self._name("ctl", "symbols")

    # orders: on a cluster every execution name shares the ``{orders}`` slot, so the gateway's
    # MULTI/EXEC over an order hash, the open set, the events stream and a position stays atomic
    # (order flow is small next to market data: one master carries it easily)
    def _orders(self, *parts: str) -> str:
        return self._name("{orders}", *parts) if self.cluster else self._name(*parts)

    def _orders_named(self, part: str) -> str:
        """A name that keeps its ``orders`` segment on one node (``tf:orders:intents``): on a cluster the
        segment becomes the slot's tag (``tf:{orders}:intents``)."""
        return self._name("{orders}" if self.cluster else "orders", part)

    def order_intents(self) -> str:
        return self._orders_named("intents")

    def operator_intents(self) -> str:
        # one XREADGROUP reads both intent streams: on a cluster they must share a slot
        return self._orders_named("operator")

    def order_events(self) -> str:
        return self._orders_named("events")

    def exec_channel(self) -> str:
        return self._name("md", "exec")

    def order(self, client_order_id: str) -> str:
        return self._orders("order", client_order_id)

    def order_pattern(self) -> str:
        return self._orders("order", "*")

    def open_orders(self) -> str:
        return self._orders_named("open")

    def position(self, symbol: str) -> str:
        return self._orders("position", symbol)

    def position_pattern(self) -> str:
        return self._orders("position", "*")

    def risk_halt(self) -> str:
        return self._orders("risk", "halt")

    def risk_reduce_only(self) -> str:
        return self._orders("risk", "reduce_only")

    def order_rate_bucket(self) -> str:
        return self._orders("risk", "order_bucket")

    def broker_rate_bucket(self) -> str:
        return self._orders("risk", "broker_bucket")

    def symbol_from(self, key_or_channel: str, prefix: str) -> str:
        """The symbol at the end of a name built with one of the ``*_prefix`` methods."""
        symbol = key_or_channel[len(prefix) :]
        return symbol[1:-1] if self.cluster and symbol.startswith("{") and symbol.endswith("}") else symbol
