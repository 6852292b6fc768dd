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
  subtracted from realized PnL; on sells also the regulatory fees a US-equities
  account pays (``sim_sec_fee_per_million`` of notional, ``sim_taf_per_share`` up to
  ``sim_taf_max`` per fill), all 0 unless set;
- ``sim_fill``: ``touch`` (default) fills a resting limit when the other side reaches
  its price, ``through`` only when it trades past it (queue-conservative);
- ``sim_market_walk``: a market order takes the displayed size at the touch and fills
  the rest at once, ``sim_market_slippage_bps`` beyond the touch (default: the rest
  waits for the next quotes).

Working orders live in the store (``tf:orders:open``), so a restarted gateway picks
them up and keeps matching them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import redis.asyncio as aioredis

from core.codec import Quote, decode_quotes, quote_from_hash
from core.errors import ConfigError, DecodeError
from core.keys import Keys
from core.orders import CANCELED, NEW, REPLACED, Order
from core.ratelimit import RateLimitedLog
from core.settings import option
from hub.execution.brokers.sim_feed import QuoteFeed
from hub.execution.store import Fill, OrderStore

log = logging.getLogger(__name__)
BPS = Decimal(10_000)
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, kw_only=True)
class SimBrokerSettings:
    sim_fee_per_share: float = option(0.0, help="sim broker: fee per share filled, in dollars")
    sim_fee_bps: float = option(0.0, help="sim broker: fee in basis points of filled notional")
    sim_latency_ns: int = option(0, key="sim_latency", duration=True,
                                 help="sim broker: delay before an accepted order can trade")
    sim_whole_shares: tuple[str, ...] = option((), help="sim broker: symbols traded in whole shares only "
                                                        "(every other symbol is fractionable, as most at Alpaca)")
    sim_fill: Literal["touch", "through"] = option("touch", help="sim broker: a resting limit fills when the "
                                                   "other side touches its price, or only when it trades through")
    sim_market_walk: bool = option(False, help="sim broker: fill a market order's rest beyond the displayed size "
                                               "at once, sim_market_slippage_bps past the touch")
    sim_market_slippage_bps: float = option(5.0, help="sim broker: price of a walked market remainder, in basis "
                                                      "points beyond the touch")
    sim_sec_fee_per_million: float = option(0.0, help="sim broker: SEC fee on sells, dollars per million of notional")
    sim_taf_per_share: float = option(0.0, help="sim broker: FINRA TAF on sells, dollars per share")
    sim_taf_max: float = option(0.0, help="sim broker: cap of the TAF per fill, dollars (0: no cap)")

    def __post_init__(self) -> None:
        if self.sim_fee_per_share < 0 or self.sim_fee_bps < 0:
            raise ConfigError("settings 'sim_fee_per_share' and 'sim_fee_bps' must be >= 0")
        if min(self.sim_market_slippage_bps, self.sim_sec_fee_per_million, self.sim_taf_per_share,
               self.sim_taf_max) < 0:
            raise ConfigError("settings 'sim_market_slippage_bps', 'sim_sec_fee_per_million', 'sim_taf_per_share' "
                              "and 'sim_taf_max' must be >= 0")


def price_of(value: float) -> Decimal:
    """A quote's float price as the Decimal on Alpaca's grid (4 decimals at most)."""
    return Decimal(repr(value)).quantize(Decimal("0.0001")).normalize()


def match(order: Order, quote: Quote, available: Decimal, at_touch: bool,
          through: bool = False) -> tuple[Decimal, Decimal] | None:
    """(qty, price) this quote fills of ``order``, or None.

    ``at_touch``: the order is arriving (or is a market order) and takes the touch's
    price; otherwise it rests and trades at its own limit when crossed (``through``:
    only when the other side is strictly better than the limit).
    """
    touch = quote.ask if order.side == "buy" else quote.bid
    if touch <= 0 or available <= 0:
        return None
    touch_price = price_of(touch)
    limit = order.limit_price
    if limit is not None and (touch_price > limit if order.side == "buy" else touch_price < limit):
        return None
    if through and not at_touch and touch_price == limit:
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
        self._sec_per_million = Decimal(repr(settings.sim_sec_fee_per_million))
        self._taf_per_share = Decimal(repr(settings.sim_taf_per_share))
        self._taf_max = Decimal(repr(settings.sim_taf_max))
        self._slippage = Decimal(repr(settings.sim_market_slippage_bps)) / BPS
        self._feed = QuoteFeed(raw_client, keys)
        self._latest: dict[str, Quote] = {}
        self._resting: set[str] = set()  # orders that have met a quote since they became active
        # (symbol, side) -> (touch price, displayed size, qty our orders took of it): see _displayed
        self._taken: dict[tuple[str, str], tuple[float, float, Decimal]] = {}
        self._bad_input = RateLimitedLog(log)
        # Quote matching and order arrival interleave at awaits; one at a time keeps fills exact.
        self._lock = asyncio.Lock()
        self.fills = 0
        self.quotes_seen = 0
        self.bad_messages = 0

    def status(self) -> Mapping[str, str | int | float]:
        return {"fills": self.fills, "bad_messages": self.bad_messages}

    @property
    def followed(self) -> frozenset[str]:
        """The symbols subscribed one by one on a cluster (see QuoteFeed.followed); on one node a pattern
        covers them all and this is empty."""
        return self._feed.followed

    async def start(self) -> None:
        self._resting = set(self._store.open)  # after a restart every working order is resting
        for order in self._store.open.values():
            await self._feed.follow(order.symbol)

    async def close(self) -> None:
        await self._feed.aclose()

    def fee(self, qty: Decimal, price: Decimal, side: str = "buy") -> Decimal:
        fee = qty * self._fee_per_share + qty * price * self._fee_bps / BPS
        if side == "sell":
            taf = qty * self._taf_per_share
            fee += min(taf, self._taf_max) if self._taf_max > 0 else taf
            fee += qty * price * self._sec_per_million / MILLION
        return fee

    # requests -----------------------------------------------------------------

    async def submit(self, order: Order) -> None:
        async with self._lock:
            await self._feed.follow(order.symbol)  # before it is accepted: every later quote reaches it
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
                await self._store.reject(new, f"cannot replace {old.client_order_id}: it is no longer open")
                return
            await self._feed.follow(new.symbol)
            _, accepted = await self._store.record_many([
                (current.evolve(status=REPLACED, replaced_by=new.client_order_id), "replaced"),
                (new.evolve(status=NEW), "new")])
            self._resting.discard(old.client_order_id)
            await self._on_arrival(accepted)

    async def fractionable(self, symbol: str) -> bool:
        return symbol not in self._settings.sim_whole_shares

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
        available = {"buy": self._displayed(quote, "buy"), "sell": self._displayed(quote, "sell")}
        for listed in sorted(orders, key=lambda o: (o.created_ns, o.client_order_id)):
            order = self._store.open.get(listed.client_order_id)  # the current state, not a snapshot
            if order is None or not self._eligible(order, quote):
                continue
            arriving = order.client_order_id not in self._resting
            at_touch = arriving or order.order_type == "market"
            result = match(order, quote, available[order.side], at_touch, self._settings.sim_fill == "through")
            if arriving and order.time_in_force == "fok" and (result is None or result[0] < order.qty):
                result = None
            if result is not None:
                qty, price = result
                available[order.side] -= qty
                order = await self._store.fill(order, Fill(qty, price, self.fee(qty, price, order.side)))
                self.fills += 1
                if not order.is_open:  # found by the soak: every filled resting id stayed here for good
                    self._resting.discard(order.client_order_id)
                if order.order_type == "market" and order.is_open and self._settings.sim_market_walk:
                    await self._walk(order, price)
            if arriving and self._settings.sim_latency_ns > 0:
                await self._finish_arrival(order.client_order_id)
        self._remember_taken(quote, available)

    def _displayed(self, quote: Quote, side: str) -> Decimal:
        """What is left to take at the touch ``side`` trades against: the displayed size, less what our
        orders took of it while the touch kept this price and size (a repeated book is not new liquidity)."""
        price, size = (quote.ask, quote.ask_size) if side == "buy" else (quote.bid, quote.bid_size)
        displayed = Decimal(repr(size))
        seen = self._taken.get((quote.symbol, side))
        if seen is None or seen[0] != price or seen[1] != size:
            return displayed
        return max(displayed - seen[2], Decimal(0))

    def _remember_taken(self, quote: Quote, available: Mapping[str, Decimal]) -> None:
        for side, price, size in (("buy", quote.ask, quote.ask_size), ("sell", quote.bid, quote.bid_size)):
            taken = Decimal(repr(size)) - available[side]
            if taken > 0:
                self._taken[(quote.symbol, side)] = (price, size, taken)
            else:
                self._taken.pop((quote.symbol, side), None)

    def _forget_changed_touch(self, quote: Quote) -> None:
        """A quote matched against no order still ends what was taken at a touch it changes."""
        for side, price, size in (("buy", quote.ask, quote.ask_size), ("sell", quote.bid, quote.bid_size)):
            seen = self._taken.get((quote.symbol, side))
            if seen is not None and (seen[0] != price or seen[1] != size):
                del self._taken[(quote.symbol, side)]

    async def _walk(self, order: Order, touch: Decimal) -> None:
        """Fill a market order's rest beyond the displayed size at the slipped price, rounded against it."""
        factor = 1 + self._slippage if order.side == "buy" else 1 - self._slippage
        grid = Decimal("0.01") if touch >= 1 else Decimal("0.0001")
        rounding = "ROUND_CEILING" if order.side == "buy" else "ROUND_FLOOR"
        price = (touch * factor).quantize(grid, rounding=rounding)
        qty = order.remaining_qty
        await self._store.fill(order, Fill(qty, price, self.fee(qty, price, order.side)))
        self.fills += 1

    def take_quote(self, quote: Quote) -> bool:
        """What :meth:`on_quote` does without awaiting (a backtest's hot path): record the quote; True
        when orders work on its symbol, so ``on_quote`` must still match them."""
        if self._store.by_symbol.get(quote.symbol):
            return True
        if self._taken:
            self._forget_changed_touch(quote)
        self._latest[quote.symbol] = quote
        self.quotes_seen += 1
        return False

    async def on_quote(self, quote: Quote) -> None:
        self._latest[quote.symbol] = quote
        orders = list(self._store.by_symbol.get(quote.symbol, {}).values())
        if orders:
            async with self._lock:
                await self._match_quote(quote, orders)
        elif self._taken:
            self._forget_changed_touch(quote)
        self.quotes_seen += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the quotes of the symbols orders were placed on and match the working orders against them."""
        await self._feed.run(self._on_message, stop)

    async def _on_message(self, raw: bytes) -> None:
        try:
            quotes = decode_quotes(raw)
        except DecodeError as e:
            self.bad_messages += 1
            self._bad_input.warning("decode", "skipping bad quote message: %s", e)
            return
        for quote in quotes:
            try:
                await self.on_quote(quote)
            except ArithmeticError as e:  # e.g. a price too big for the grid: skip it, keep matching the next
                self.bad_messages += 1
                self.quotes_seen += 1
                self._bad_input.warning("match", "skipping a quote the book cannot match against (%s): %s %s",
                                        type(e).__name__, quote.symbol, quote)

