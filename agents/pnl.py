"""PnL: realized and unrealized PnL per symbol and for the portfolio, into the cache.

Always periodic. Every ``throttle`` it reads the positions (``tf:position:*``:
quantity, average price, realized PnL net of fees) and marks each at the
symbol's ``fair_price`` from the cache (or the mid of ``tf:quote:<SYMBOL>``
when there is no fresh fair price)::

    unrealized = qty * (mark - avg_price) * multiplier     (multiplier: 1, or 100 for OCC options)
    realized   = (realized_pnl + fees) * multiplier - fees (the store keeps the price part per share)

and writes ``pnl_realized``, ``pnl_unrealized``, ``pnl_total`` and ``mark``
into ``tf:cache:<SYMBOL>``, and the sums (plus ``positions`` and ``unmarked``,
the count of open positions without a price) into ``tf:cache:portfolio``, a key
no symbol can produce (core.keys.PORTFOLIO). At start it removes the totals an
older version left in ``tf:cache:PORTFOLIO`` (now the cache of the symbol PORTFOLIO).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from agents.greeks import parse_occ
from agents.pricing import to_decimal
from cache import DataCache
from core.codec import quote_from_hash
from core.errors import ConfigError, DecodeError
from core.keys import LEGACY_PORTFOLIO, PORTFOLIO
from core.settings import option

ZERO = Decimal(0)
ONE = Decimal(1)


class PositionLike(Protocol):
    @property
    def symbol(self) -> str: ...

    @property
    def qty(self) -> Decimal: ...

    @property
    def avg_price(self) -> Decimal: ...

    @property
    def realized_pnl(self) -> Decimal: ...

    @property
    def fees(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class SymbolPnl:
    symbol: str
    realized: Decimal
    unrealized: Decimal | None  # None: open position without a mark
    mark: Decimal | None

    @property
    def total(self) -> Decimal:
        return self.realized + (self.unrealized or ZERO)


def realized_dollars(position: PositionLike, multiplier: Decimal = ONE) -> Decimal:
    """Realized PnL net of fees in dollars. The order store keeps it as the price part per share less the
    fees, which are dollars; one option contract is ``multiplier`` shares, so only the price part scales."""
    if multiplier == ONE:
        return position.realized_pnl
    return (position.realized_pnl + position.fees) * multiplier - position.fees


def symbol_pnl(position: PositionLike, mark: Decimal | None, multiplier: Decimal = ONE) -> SymbolPnl:
    """PnL of one position marked at ``mark``, in dollars; a flat position needs no mark."""
    realized = realized_dollars(position, multiplier)
    if position.qty == 0:
        return SymbolPnl(position.symbol, realized, ZERO, mark)
    if mark is None:
        return SymbolPnl(position.symbol, realized, None, None)
    unrealized = position.qty * (mark - position.avg_price) * multiplier
    return SymbolPnl(position.symbol, realized, unrealized, mark)


@dataclass(frozen=True, slots=True)
class PortfolioPnl:
    realized: Decimal
    unrealized: Decimal
    positions: int
    unmarked: int

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def portfolio_pnl(pnls: Iterable[SymbolPnl], open_symbols: set[str]) -> PortfolioPnl:
    items = list(pnls)
    return PortfolioPnl(realized=sum((p.realized for p in items), ZERO),
                        unrealized=sum((p.unrealized or ZERO for p in items), ZERO),
                        positions=len(open_symbols),
                        unmarked=sum(1 for p in items if p.unrealized is None))


@dataclass(frozen=True, kw_only=True)
class PnlParams:
    mark_max_age_ns: int = option("10s", key="mark_max_age", duration=True,
                                  help="a fair_price older than this is not used as the mark (the mid is)")
    contract_multiplier: float = option(100.0, help="shares per option contract (OCC symbols)")

    def __post_init__(self) -> None:
        if self.contract_multiplier <= 0:
            raise ConfigError("setting 'contract_multiplier' must be > 0, e.g. 100")


class PnL(TradingAgent):
    """Realized and unrealized PnL per symbol and in total, in the cache."""

    Params = PnlParams
    default_name = "pnl"
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "1s", "on_quotes": False}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None,
                 **kwargs: Any) -> None:
        kwargs.pop("agent_type", None)
        super().__init__({**(config or {}), "agent_type": "periodic"}, data_cache, **kwargs)
        self.params: PnlParams
        self.last: PortfolioPnl | None = None

    async def on_start(self) -> None:
        await self._drop_legacy_portfolio()

    async def _drop_legacy_portfolio(self) -> None:
        """Totals in ``tf:cache:PORTFOLIO`` (``unmarked`` is a portfolio-only field) are an older
        version's; they are recomputed every period, so deleting them is the whole migration."""
        client, key = self.data_cache.client, self.data_cache.keys.cache(LEGACY_PORTFOLIO)
        if await client.hexists(key, "unmarked"):
            await client.delete(key)
            self.log.info("removed the old portfolio totals in %s; they now live in %s", key,
                          self.data_cache.keys.cache(PORTFOLIO))

    async def run(self, data: Event) -> None:
        # one valuation per period: with instruments the runtime calls once per instrument
        if data.instrument not in (None, *self.instruments[:1]):
            return
        await self.value_portfolio()

    async def value_portfolio(self) -> PortfolioPnl:
        positions = await self.trading.positions()
        symbols = sorted(set(positions) | set(self.instruments))
        pnls = []
        for symbol in symbols:
            position = positions.get(symbol)
            if position is None:
                pnls.append(SymbolPnl(symbol, ZERO, ZERO, None))
                continue
            multiplier = to_decimal(self.params.contract_multiplier) if parse_occ(symbol) else Decimal(1)
            pnls.append(symbol_pnl(position, await self.mark(symbol), multiplier))
        for pnl in pnls:
            await self.data_cache.update(pnl.symbol, _pnl_fields(pnl), notify=False)
        total = portfolio_pnl(pnls, {s for s, p in positions.items() if p.qty != 0})
        await self.data_cache.update(PORTFOLIO, {
            "pnl_realized": float(total.realized), "pnl_unrealized": float(total.unrealized),
            "pnl_total": float(total.total), "positions": total.positions, "unmarked": total.unmarked})
        self.last = total
        return total

    async def mark(self, symbol: str) -> Decimal | None:
        fair = await self.data_cache.get_float(symbol, "fair_price", max_age_ns=self.params.mark_max_age_ns)
        if fair is not None:
            return to_decimal(fair)
        fields = await self.data_cache.client.hgetall(self.data_cache.keys.latest_quote(symbol))
        try:
            quote = quote_from_hash(symbol, fields) if fields else None
        except DecodeError:
            return None
        mid = quote.mid if quote is not None else None
        return to_decimal(mid) if mid is not None else None


def _pnl_fields(pnl: SymbolPnl) -> dict[str, float]:
    fields = {"pnl_realized": float(pnl.realized), "pnl_total": float(pnl.total)}
    if pnl.unrealized is not None:
        fields["pnl_unrealized"] = float(pnl.unrealized)
    if pnl.mark is not None:
        fields["mark"] = float(pnl.mark)
    return fields


if __name__ == "__main__":
    run_agent_module(PnL)
