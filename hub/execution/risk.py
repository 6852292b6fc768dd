"""Pre-trade risk: every new order passes these checks in the gateway before it reaches a broker.

Checks, in order (the first failure is the rejection reason sent back to the agent):

1. trading state: ``tf:risk:halt`` set -> reject everything; ``tf:risk:reduce_only`` set ->
   only orders that shrink the position (counting this side's open orders) pass;
2. Alpaca price rules: limit prices on the tick grid (2 decimals at or above $1, 4 below);
   Alpaca's fractional-share rules: a fractional quantity only in a market day order on a
   fractionable symbol, worth at least $1 (docs/order-safety.md cites the rules);
3. max order quantity; 4. max order notional (limit price, or the touch for market orders);
5. max position per symbol, counting this side's open orders;
6. max open orders (account-wide);
7. price collar: a buy limit may be at most ``price_collar`` above the ask, a sell at most
   that far below the bid (fat-finger check);
8. order rate: a token bucket, by default 3/s with bursts of 20, which also keeps the
   account under Alpaca's 200 requests per minute. In the gateway process the bucket lives
   in Redis (``tf:risk:order_bucket``), so a restart does not refill it.

:meth:`RiskChecks.check` runs 1-7 (pure); :meth:`RiskChecks.admit` runs them and then takes a
token, so a rejected order never spends one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from core.clock import Clock
from core.errors import ConfigError
from core.orders import ZERO, Order, fmt
from core.prices import BidAsk
from core.ratelimit import LocalRateGate, RateGate, TokenBucket
from core.settings import option
from core.ticks import MIN_FRACTIONAL_NOTIONAL, is_fractional, tick_violation


@dataclass(frozen=True, kw_only=True)
class RiskSettings:
    max_order_qty: float = option(1_000.0, help="largest quantity of one order")
    max_order_notional: float = option(100_000.0, help="largest qty x price of one order, in dollars")
    max_position: float = option(5_000.0, help="largest absolute position per symbol, counting open orders")
    max_open_orders: int = option(200, help="most orders working at once, account-wide")
    order_rate: float = option(3.0, help="new orders and replaces per second (token bucket refill); "
                                         "3/s keeps under Alpaca's 200 requests/min")
    order_burst: int = option(20, help="token bucket size: orders allowed back to back")
    price_collar: float = option(0.05, help="largest distance of a limit price through the touch, as a "
                                            "fraction (0.05 = 5%%); 0 disables the fat-finger check")
    require_quote: bool = option(True, help="reject orders on symbols with no quote in tf:quote:<SYMBOL> "
                                            "(needed for the collar and market-order notional)")

    def __post_init__(self) -> None:
        for name in ("max_order_qty", "max_order_notional", "max_position", "order_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"setting '{name}' must be > 0")
        if self.max_open_orders <= 0 or self.order_burst <= 0:
            raise ConfigError("settings 'max_open_orders' and 'order_burst' must be > 0")
        if not 0 <= self.price_collar < 1:
            raise ConfigError("setting 'price_collar' must be in [0, 1), e.g. 0.05 for 5%")


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the checks need to know besides the order itself."""

    halted: bool
    reduce_only: bool
    position_qty: Decimal
    open_buy_qty: Decimal  # unfilled qty of this symbol's working buy orders (excluding one being replaced)
    open_sell_qty: Decimal
    open_count: int  # account-wide
    touch: BidAsk | None
    fractionable: bool = False  # the broker trades fractions of this symbol (only looked up for fractional qty)


def check_tick(price: Decimal) -> str | None:
    return tick_violation(price)


def check_fractional(order: Order, fractionable: bool, price: Decimal | None) -> str | None:
    """Alpaca's fractional-share rules, for an order whose quantity is not whole."""
    if not is_fractional(order.qty):
        return None
    if order.order_type != "market" or order.time_in_force != "day":
        return (f"fractional qty {fmt(order.qty)}: Alpaca takes fractions only in market day orders, "
                f"not {order.order_type} {order.time_in_force}")
    if not fractionable:
        return f"fractional qty {fmt(order.qty)}: {order.symbol} is not fractionable at the broker"
    if price is None:
        return f"no quote for {order.symbol}: cannot check the $1 minimum of a fractional order"
    notional = order.qty * price
    if notional < MIN_FRACTIONAL_NOTIONAL:
        return f"fractional order worth ${fmt(notional)} is below Alpaca's $1 minimum"
    return None


def reference_price(order: Order, touch: BidAsk | None) -> Decimal | None:
    """The price an order's notional is measured at: its limit, else the touch it would take."""
    if order.limit_price is not None:
        return order.limit_price
    level = touch.opposite(order.side) if touch is not None else None
    return level.price if level is not None else None


class RiskChecks:
    def __init__(self, settings: RiskSettings, clock: Clock, rate: RateGate | None = None) -> None:
        """``rate``: the order-rate bucket (the gateway process passes one in Redis); default in memory."""
        self.settings = settings
        self._bucket = rate or LocalRateGate(TokenBucket(settings.order_rate, settings.order_burst, clock))
        self._held = 0  # tokens reserved for the batch being handled
        self._max_qty = Decimal(repr(settings.max_order_qty))
        self._max_notional = Decimal(repr(settings.max_order_notional))
        self._max_position = Decimal(repr(settings.max_position))
        self._collar = Decimal(repr(settings.price_collar))
        self.rejections = 0
        #: rejections per check ("state", "tick", "size", "notional", "position", "open_count", ...)
        self.rejections_by_check: dict[str, int] = {}

    def check(self, order: Order, ctx: RiskContext) -> str | None:
        """The rejection reason of checks 1-7, or None if they pass."""
        checks: tuple[Callable[[Order, RiskContext], str | None], ...] = (
            self._state, self._tick, self._fractional, self._size, self._notional, self._position,
            self._open_count, self._price_collar)
        for check in checks:
            reason = check(order, ctx)
            if reason is not None:
                self.rejections += 1
                name = check.__name__.lstrip("_")
                self.rejections_by_check[name] = self.rejections_by_check.get(name, 0) + 1
                return reason
        return None

    async def reserve(self, count: int) -> None:
        """Take up to ``count`` tokens at once for the orders of one batch (one round trip, not one each)."""
        self._held += await self._bucket.take(count) if count > 0 else 0

    async def release(self) -> None:
        """Give back what the batch reserved and did not use (its rejected orders and resends)."""
        held, self._held = self._held, 0
        await self._bucket.give_back(held)

    async def admit(self, order: Order, ctx: RiskContext) -> str | None:
        """Every check, the order rate last: the rejection reason, or None if the order may go."""
        reason = self.check(order, ctx)
        if reason is None and self._held > 0:
            self._held -= 1
        elif reason is None and not await self._bucket.take():
            self.rejections += 1
            self.rejections_by_check["rate"] = self.rejections_by_check.get("rate", 0) + 1
            reason = (f"order rate limit: more than {self.settings.order_rate:g}/s "
                      f"(burst {self.settings.order_burst}); retry later")
        return reason

    def _state(self, order: Order, ctx: RiskContext) -> str | None:
        if ctx.halted:
            return "trading halted (kill switch tf:risk:halt is set)"
        if not ctx.reduce_only:
            return None
        room = -ctx.position_qty - ctx.open_buy_qty if order.side == "buy" else ctx.position_qty - ctx.open_sell_qty
        if order.qty > room:
            return (f"reduce-only: {order.side} {fmt(order.qty)} would not reduce the position "
                    f"{fmt(ctx.position_qty)} (room {fmt(max(room, ZERO))} counting open orders)")
        return None

    def _tick(self, order: Order, ctx: RiskContext) -> str | None:
        return check_tick(order.limit_price) if order.limit_price is not None else None

    def _fractional(self, order: Order, ctx: RiskContext) -> str | None:
        return check_fractional(order, ctx.fractionable, reference_price(order, ctx.touch))

    def _size(self, order: Order, ctx: RiskContext) -> str | None:
        if order.qty > self._max_qty:
            return f"quantity {fmt(order.qty)} exceeds max_order_qty {fmt(self._max_qty)}"
        return None

    def _notional(self, order: Order, ctx: RiskContext) -> str | None:
        price = reference_price(order, ctx.touch)
        if price is None:
            if order.order_type == "market" and self.settings.require_quote:
                return f"no quote for {order.symbol}: cannot price a market order"
            return None
        notional = order.qty * price
        if notional > self._max_notional:
            return f"notional {fmt(notional)} exceeds max_order_notional {fmt(self._max_notional)}"
        return None

    def _position(self, order: Order, ctx: RiskContext) -> str | None:
        if order.side == "buy":
            projected = ctx.position_qty + ctx.open_buy_qty + order.qty
        else:
            projected = ctx.position_qty - ctx.open_sell_qty - order.qty
        if abs(projected) > self._max_position:
            return (f"position {fmt(ctx.position_qty)} with open orders and this one could reach "
                    f"{fmt(projected)}, beyond max_position {fmt(self._max_position)}")
        return None

    def _open_count(self, order: Order, ctx: RiskContext) -> str | None:
        if ctx.open_count >= self.settings.max_open_orders:
            return f"{ctx.open_count} orders already open (max_open_orders {self.settings.max_open_orders})"
        return None

    def _price_collar(self, order: Order, ctx: RiskContext) -> str | None:
        if order.limit_price is None or self._collar == 0:
            return None
        touch = ctx.touch
        if touch is None:
            return f"no quote for {order.symbol} to check the price collar" if self.settings.require_quote else None
        ask, bid = touch.ask, touch.bid
        if order.side == "buy" and ask is not None and order.limit_price > ask.price * (1 + self._collar):
            return (f"buy limit {fmt(order.limit_price)} is more than {self._collar:%} above the ask "
                    f"{fmt(ask.price)} (price collar)")
        if order.side == "sell" and bid is not None and order.limit_price < bid.price * (1 - self._collar):
            return (f"sell limit {fmt(order.limit_price)} is more than {self._collar:%} below the bid "
                    f"{fmt(bid.price)} (price collar)")
        return None
