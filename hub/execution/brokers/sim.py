"""The simulated broker: fills orders against the quotes on the bus, whatever their source.

Rules (deterministic: fills depend only on the orders and the quote sequence):

- an order that is marketable when it arrives fills at the touch (a buy at the ask,
  a sell at the bid) up to the displayed size; the rest works as a resting order;
- a resting limit fills at its limit price when a later quote crosses it (ask <= buy
  limit, bid >= sell limit), up to that quote's displayed size; several orders on one
  quote share its size, oldest first; a market order takes the touch of each quote;
- ``ioc`` orders cancel what is left after arrival; ``fok`` orders fill whole or cancel;
- ``sim_latency``: an order starts trading only with quotes received that long after
  it was accepted (a marketable order then fills at the touch of that quote);
- fees: ``sim_fee_per_share`` + ``sim_fee_bps`` of notional, charged per fill and
  subtracted from realized PnL.

Working orders live in the store (``tf:orders:open``), so a restarted gateway picks
them up and keeps matching them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

import redis.asyncio as aioredis

from core.codec import Quote, decode_quotes, quote_from_hash
from core.errors import ConfigError, DecodeError
from core.keys import Keys
from core.orders import CANCELED, NEW, REPLACED, Order
from core.ratelimit import RateLimitedLog
from core.settings import option
from hub.execution.store import Fill, OrderStore

log = logging.getLogger(__name__)
BPS = Decimal(10_000)


@dataclass(frozen=True, kw_only=True)
class SimBrokerSettings:
    sim_fee_per_share: float = option(0.0, help="sim broker: fee per share filled, in dollars")
    sim_fee_bps: float = option(0.0, help="sim broker: fee in basis points of filled notional")
    sim_latency_ns: int = option(0, key="sim_latency", duration=True,
                                 help="sim broker: delay before an accepted order can trade")

    def __post_init__(self) -> None:
        if self.sim_fee_per_share < 0 or self.sim_fee_bps < 0:
            raise ConfigError("settings 'sim_fee_per_share' and 'sim_fee_bps' must be >= 0")


def price_of(value: float) -> Decimal:
    """A quote's float price as the Decimal on Alpaca's grid (4 decimals at most)."""
    return Decimal(repr(value)).quantize(Decimal("0.0001")).normalize()


def match(order: Order, quote: Quote, available: Decimal, at_touch: bool) -> tuple[Decimal, Decimal] | None:
    """(qty, price) this quote fills of ``order``, or None.

    ``at_touch``: the order is arriving (or is a market order) and takes the touch's
    price; otherwise it rests and trades at its own limit when crossed.
    """
    touch = quote.ask if order.side == "buy" else quote.bid
    if touch <= 0 or available <= 0:
        return None
    touch_price = price_of(touch)
    limit = order.limit_price
    if limit is not None and (touch_price > limit if order.side == "buy" else touch_price < limit):
        return None
    qty = min(order.remaining_qty, available)
    price = touch_price if at_touch or limit is None else limit
    return qty, price


class SimBroker:
    def __init__(self, store: OrderStore, raw_client: aioredis.Redis, keys: Keys,
                 settings: SimBrokerSettings) -> None:
        self._store = store
        self._raw = raw_client
        self._keys = keys
        self._settings = settings
        self._fee_per_share = Decimal(repr(settings.sim_fee_per_share))
        self._fee_bps = Decimal(repr(settings.sim_fee_bps))
        self._latest: dict[str, Quote] = {}
        self._resting: set[str] = set()  # orders that have met a quote since they became active
        self._bad_input = RateLimitedLog(log)
        # Quote matching and order arrival interleave at awaits; one at a time keeps fills exact.
        self._lock = asyncio.Lock()
        self.fills = 0
        self.quotes_seen = 0
        self.bad_messages = 0

    def status(self) -> Mapping[str, str | int | float]:
        return {"fills": self.fills, "bad_messages": self.bad_messages}

    async def start(self) -> None:
        self._resting = set(self._store.open)  # after a restart every working order is resting

    async def close(self) -> None:
        return None

    def fee(self, qty: Decimal, price: Decimal) -> Decimal:
        return qty * self._fee_per_share + qty * price * self._fee_bps / BPS

    # requests -----------------------------------------------------------------

    async def submit(self, order: Order) -> None:
        async with self._lock:
            accepted = await self._store.record(order.evolve(status=NEW), "new")
            await self._on_arrival(accepted)

    async def resume(self, order: Order) -> None:
        # The sim accepts an order in the same transaction that records it: never half-done.
        return None

    async def cancel(self, order: Order) -> None:
        async with self._lock:
            await self._cancel(order.client_order_id)

    async def _cancel(self, client_order_id: str) -> None:
        current = self._store.open.get(client_order_id)
        if current is not None:
            await self._store.record(current.evolve(status=CANCELED), "canceled")
        self._resting.discard(client_order_id)

    async def replace(self, old: Order, new: Order) -> None:
        async with self._lock:
            current = self._store.open.get(old.client_order_id)
            if current is None:  # filled meanwhile: the replacement has nothing left to replace
                await self._store.record(new.evolve(status="rejected", reject_reason=(
                    f"cannot replace {old.client_order_id}: it is no longer open")), "rejected")
                return
            _, accepted = await self._store.record_many([
                (current.evolve(status=REPLACED, replaced_by=new.client_order_id), "replaced"),
                (new.evolve(status=NEW), "new")])
            self._resting.discard(old.client_order_id)
            await self._on_arrival(accepted)

    async def cancel_all(self, orders: Sequence[Order]) -> None:
        async with self._lock:
            for order in orders:
                await self._cancel(order.client_order_id)

    # matching -------------------------------------------------------------------

    async def _on_arrival(self, order: Order) -> None:
        if self._settings.sim_latency_ns > 0:
            return  # it trades from the first quote received after the latency
        quote = await self._quote(order.symbol)
        if quote is not None:
            await self._match_quote(quote, [order])
        await self._finish_arrival(order.client_order_id)

    async def _finish_arrival(self, client_order_id: str) -> None:
        """After an order has met its first quote: ioc/fok remainders end, the rest rests."""
        order = self._store.open.get(client_order_id)
        if order is None:
            return
        if order.time_in_force in ("ioc", "fok"):
            await self._store.record(order.evolve(status=CANCELED), "canceled")
        else:
            self._resting.add(client_order_id)

    async def _quote(self, symbol: str) -> Quote | None:
        quote = self._latest.get(symbol)
        if quote is None:
            fields = await self._raw.hgetall(self._keys.latest_quote(symbol))
            if fields:
                try:
                    quote = quote_from_hash(symbol, {k.decode(): v.decode() for k, v in fields.items()})
                    self._latest[symbol] = quote  # pub/sub replaces it with every newer quote
                except DecodeError as e:
                    self._bad_input.warning("hash", "bad latest-quote hash: %s", e)
        return quote

    def _eligible(self, order: Order, quote: Quote) -> bool:
        latency_ns = self._settings.sim_latency_ns
        return latency_ns == 0 or quote.ts_recv_ns >= order.created_ns + latency_ns or \
            order.client_order_id in self._resting

    async def _match_quote(self, quote: Quote, orders: Sequence[Order]) -> None:
        """Fill ``orders`` (oldest first) against one quote's displayed size. Caller holds the lock."""
        available = {"buy": Decimal(repr(quote.ask_size)), "sell": Decimal(repr(quote.bid_size))}
        for listed in sorted(orders, key=lambda o: (o.created_ns, o.client_order_id)):
            order = self._store.open.get(listed.client_order_id)  # the current state, not a snapshot
            if order is None or not self._eligible(order, quote):
                continue
            arriving = order.client_order_id not in self._resting
            at_touch = arriving or order.order_type == "market"
            result = match(order, quote, available[order.side], at_touch)
            if arriving and order.time_in_force == "fok" and (result is None or result[0] < order.qty):
                result = None
            if result is not None:
                qty, price = result
                available[order.side] -= qty
                filled = await self._store.fill(order, Fill(qty, price, self.fee(qty, price)))
                self.fills += 1
                if not filled.is_open:  # found by the soak: every filled resting id stayed here for good
                    self._resting.discard(filled.client_order_id)
            if arriving and self._settings.sim_latency_ns > 0:
                await self._finish_arrival(order.client_order_id)

    async def on_quote(self, quote: Quote) -> None:
        self._latest[quote.symbol] = quote
        orders = list(self._store.by_symbol.get(quote.symbol, {}).values())
        if orders:
            async with self._lock:
                await self._match_quote(quote, orders)
        self.quotes_seen += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Follow every symbol's quotes and match working orders against them."""
        pubsub = self._raw.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(self._keys.quote_channel_pattern())
        try:
            while not stop.is_set():
                message = await pubsub.get_message(timeout=0.2)
                if message is not None:
                    await self._on_message(message["data"])
        finally:
            await pubsub.aclose()

    async def _on_message(self, raw: bytes) -> None:
        try:
            quotes = decode_quotes(raw)
        except DecodeError as e:
            self.bad_messages += 1
            self._bad_input.warning("decode", "skipping bad quote message: %s", e)
            return
        for quote in quotes:
            await self.on_quote(quote)

