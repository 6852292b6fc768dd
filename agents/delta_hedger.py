"""DeltaHedger: keeps each underlying's portfolio delta inside ``instrument_delta_limit``.

Always periodic (whatever ``agent_type`` says): every ``throttle`` it reads
the positions, computes delta per underlying (stocks: their shares; options,
OCC symbols like ``AAPL240621C00190000``: ``qty * delta * contract_multiplier``
with delta from Alpaca's option snapshots when keys are configured, else
Black-Scholes on the underlying's ``fair_price`` and ``volatility`` from the
cache), writes it to ``tf:cache:<UNDERLYING> delta``, and where
``|delta| > instrument_delta_limit`` sends one marketable order in the
underlying that brings delta to ``hedge_to * limit`` (0: flat).

While a hedge is working no second one is sent; a hedge still open after
``hedge_timeout`` is cancelled and re-evaluated. Nothing is sent while
``tf:risk:halt`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from agents.greeks import (
    DeltaView,
    black_scholes_delta,
    hedge_price,
    hedge_quantity,
    parse_occ,
    portfolio_delta,
    years_until,
)
from agents.option_greeks import AlpacaOptionDeltas
from agents.pricing import round_through, to_decimal
from cache import DataCache
from core.clock import Clock, SystemClock
from core.codec import quote_from_hash
from core.errors import ConfigError, DecodeError
from core.orders import Side
from core.ratelimit import RateLimitedLog
from core.settings import option

REJECT_BACKOFF_NS = 1_000_000_000
MAX_BACKOFF_NS = 30_000_000_000


@dataclass(frozen=True, kw_only=True)
class DeltaHedgerParams:
    instrument_delta_limit: float = option(100.0, help="hedge an underlying when |delta| exceeds this (shares)")
    hedge_to: float = option(0.0, help="fraction of the limit a hedge brings delta back to: 0 flat, 1 the limit")
    order_type: Literal["limit", "market"] = option("limit", help="limit: marketable limit through the touch; "
                                                    "market: market order")
    slippage_bps: float = option(10.0, help="how far through the touch a marketable limit is priced (bps)")
    hedge_timeout_ns: int = option("5s", key="hedge_timeout", duration=True,
                                   help="cancel a hedge still working after this, then re-evaluate")
    contract_multiplier: float = option(100.0, help="shares per option contract")
    risk_free_rate: float = option(0.04, help="annual rate for the Black-Scholes fallback")
    fallback_volatility: float = option(0.0, help="volatility for Black-Scholes when the cache has none "
                                        "(0: do not hedge that underlying until it has one)")
    options_data_url: str = option("", help="Alpaca market-data URL override for option snapshots")
    greeks_max_age_ns: int = option("30s", key="greeks_max_age", duration=True,
                                    help="reuse Alpaca option deltas for this long")
    api_key: str = option("", env=("APCA_API_KEY_ID",), secret=True, help="Alpaca key id (option greeks only)")
    secret_key: str = option("", env=("APCA_API_SECRET_KEY",), secret=True, help="Alpaca secret key")

    def __post_init__(self) -> None:
        if self.instrument_delta_limit < 0:
            raise ConfigError("setting 'instrument_delta_limit' must be >= 0 shares, e.g. 100")
        if not 0 <= self.hedge_to <= 1:
            raise ConfigError("setting 'hedge_to' must be in [0, 1]: 0 hedges to flat, 1 to the limit")
        if self.slippage_bps < 0 or self.contract_multiplier <= 0 or self.fallback_volatility < 0:
            raise ConfigError("settings 'slippage_bps', 'fallback_volatility' must be >= 0 and "
                              "'contract_multiplier' > 0")


@dataclass
class WorkingHedge:
    client_order_id: str
    sent_ns: int
    cancel_sent: bool = False


class DeltaHedger(TradingAgent):
    """Hedges each underlying's portfolio delta back inside a limit with marketable orders."""

    Params = DeltaHedgerParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "1s"}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None, *,
                 clock: Clock | None = None, option_deltas: AlpacaOptionDeltas | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("agent_type", None)
        super().__init__({**(config or {}), "agent_type": "periodic"}, data_cache, **kwargs)
        self.params: DeltaHedgerParams
        self.clock = clock or SystemClock()
        self.option_deltas = option_deltas or self._alpaca_deltas()
        self.hedges: dict[str, WorkingHedge] = {}
        self.retry_at_ns: dict[str, int] = {}
        self.rejects: dict[str, int] = {}
        self.hedges_sent = 0
        self._warn = RateLimitedLog(self.log, interval_s=30.0)

    def _alpaca_deltas(self) -> AlpacaOptionDeltas | None:
        p = self.params
        key = p.api_key or os.environ.get("APCA_API_KEY_ID", "")
        secret = p.secret_key or os.environ.get("APCA_API_SECRET_KEY", "")
        if not (key and secret):
            return None
        return AlpacaOptionDeltas(key, secret, url_override=p.options_data_url, max_age_ns=p.greeks_max_age_ns)

    async def run(self, data: Event) -> None:
        if await self.data_cache.client.exists(self.data_cache.keys.risk_halt()):
            return
        positions = {s: p.qty for s, p in (await self.trading.positions()).items() if p.qty != 0}
        view = await self.delta_view(positions)
        underlyings = [data.instrument] if data.instrument else sorted(view.delta.keys() | view.unknown)
        for underlying in underlyings:
            await self.hedge(underlying, view)

    # delta -------------------------------------------------------------------------

    async def delta_view(self, positions: Mapping[str, Decimal]) -> DeltaView:
        options = [s for s in positions if parse_occ(s) is not None]
        deltas: dict[str, float] = {}
        if options and self.option_deltas is not None:
            deltas = await self.option_deltas.deltas(options)
        for symbol in options:
            if symbol not in deltas:
                fallback = await self.black_scholes(symbol)
                if fallback is not None:
                    deltas[symbol] = fallback
        return portfolio_delta(positions, deltas, self.params.contract_multiplier)

    async def black_scholes(self, symbol: str) -> float | None:
        contract = parse_occ(symbol)
        if contract is None:
            return None
        spot = await self._fair_or_mid(contract.underlying)
        vol = await self.data_cache.get_float(contract.underlying, "volatility") or self.params.fallback_volatility
        if spot is None or vol <= 0:
            return None
        years = years_until(contract.expiry_ns(), self.clock.time_ns())
        return black_scholes_delta(spot, contract.strike, years, vol, self.params.risk_free_rate, contract.is_call)

    # hedging -----------------------------------------------------------------------

    async def hedge(self, underlying: str, view: DeltaView) -> None:
        if underlying in view.unknown:
            self._warn.warning(f"unknown:{underlying}", "%s: an option has no delta (no greeks, no volatility "
                               "or price in the cache): not hedging it", underlying)
            return
        delta = view.delta.get(underlying, 0.0)
        await self.data_cache.set(underlying, "delta", delta)
        if await self._busy(underlying):
            return
        qty = hedge_quantity(delta, self.params.instrument_delta_limit, self.params.hedge_to)
        if qty != 0:
            await self._send(underlying, qty, delta)

    async def _busy(self, underlying: str) -> bool:
        """True while our last hedge in ``underlying`` may still trade (or after a rejection, for a while)."""
        now_ns = self.clock.monotonic_ns()
        if now_ns < self.retry_at_ns.get(underlying, 0):
            return True
        working = self.hedges.get(underlying)
        if working is None:
            return False
        order = await self.trading.order(working.client_order_id)
        age_ns = now_ns - working.sent_ns
        if order is None or order.is_open:
            if age_ns > self.params.hedge_timeout_ns and not working.cancel_sent:
                await self.trading.cancel(working.client_order_id)
                working.cancel_sent = True
            return order is not None or age_ns <= 2 * self.params.hedge_timeout_ns
        del self.hedges[underlying]
        if order.status != "rejected":
            self.rejects.pop(underlying, None)
            return False
        # back off 1s, 2s, 4s ... 30s: a rate-limit rejection clears soon, a risk limit may not
        self.rejects[underlying] = self.rejects.get(underlying, 0) + 1
        delay_ns = min(REJECT_BACKOFF_NS * 2 ** (self.rejects[underlying] - 1), MAX_BACKOFF_NS)
        self.retry_at_ns[underlying] = now_ns + delay_ns
        self._warn.warning(f"rejected:{underlying}", "%s: hedge %s rejected (%s); retrying in %.0fs", underlying,
                           order.client_order_id, order.reject_reason, delay_ns / 1e9)
        return True

    async def _send(self, underlying: str, qty: Decimal, delta: float) -> None:
        side: Side = "buy" if qty > 0 else "sell"
        if self.params.order_type == "market":
            client_order_id = await self.trading.submit_market(underlying, side, abs(qty))
            price_text = "market"
        else:
            price = await self._marketable_price(underlying, side)
            if price is None:
                self._warn.warning(f"price:{underlying}", "%s: no quote or fair price to price a hedge", underlying)
                return
            client_order_id = await self.trading.submit_limit(underlying, side, abs(qty), price)
            price_text = str(price)
        self.hedges[underlying] = WorkingHedge(client_order_id, self.clock.monotonic_ns())
        self.hedges_sent += 1
        self.log.info("%s: delta %.1f beyond %.1f: %s %s @ %s (%s)", underlying, delta,
                      self.params.instrument_delta_limit, side, abs(qty), price_text, client_order_id)

    async def _marketable_price(self, symbol: str, side: str) -> Decimal | None:
        bid, ask = await self._touch(symbol)
        fair = await self.data_cache.get_float(symbol, "fair_price")
        price = hedge_price(side, bid, ask, fair, self.params.slippage_bps)
        return None if price is None else round_through(to_decimal(price), "buy" if side == "buy" else "sell")

    async def _touch(self, symbol: str) -> tuple[float | None, float | None]:
        fields = await self.data_cache.client.hgetall(self.data_cache.keys.latest_quote(symbol))
        if not fields:
            return None, None
        try:
            quote = quote_from_hash(symbol, fields)
        except DecodeError:
            return None, None
        return (quote.bid if quote.has_bid else None), (quote.ask if quote.has_ask else None)

    async def _fair_or_mid(self, symbol: str) -> float | None:
        fair = await self.data_cache.get_float(symbol, "fair_price")
        if fair is not None:
            return fair
        bid, ask = await self._touch(symbol)
        return (bid + ask) / 2 if bid and ask else None


if __name__ == "__main__":
    run_agent_module(DeltaHedger)
