"""Pure delta math for the DeltaHedger: OCC option symbols, Black-Scholes delta,
portfolio delta per underlying and the hedge that brings it inside a limit.

Delta is in shares of the underlying: a stock position of 100 shares has delta
100; a long call with delta 0.5 and multiplier 100 has delta 50 per contract.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_CEILING, Decimal
from zoneinfo import ZoneInfo

_OCC = re.compile(r"^([A-Z][A-Z0-9.]{0,5})(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
#: US equity options stop trading at 16:00 New York time on expiry day.
_EXPIRY_TIME = time(16, 0, tzinfo=ZoneInfo("America/New_York"))
SECONDS_PER_YEAR = 365.0 * 24 * 3600


@dataclass(frozen=True, slots=True)
class OptionContract:
    """A parsed OCC symbol such as ``AAPL240621C00190000``."""

    symbol: str
    underlying: str
    expiry: date
    is_call: bool
    strike: float

    def expiry_ns(self) -> int:
        return int(datetime.combine(self.expiry, _EXPIRY_TIME).timestamp() * 1e9)


def parse_occ(symbol: str) -> OptionContract | None:
    """The contract of an OCC option symbol, or None for anything else (a stock)."""
    match = _OCC.match(symbol)
    if match is None:
        return None
    root, yy, mm, dd, kind, strike = match.groups()
    try:
        expiry = date(2000 + int(yy), int(mm), int(dd))
    except ValueError:
        return None
    return OptionContract(symbol, root, expiry, kind == "C", int(strike) / 1000.0)


def underlying_of(symbol: str) -> str:
    contract = parse_occ(symbol)
    return contract.underlying if contract else symbol


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def black_scholes_delta(spot: float, strike: float, years: float, volatility: float, rate: float,
                        is_call: bool) -> float:
    """Black-Scholes delta of one option (per share); at or past expiry, the intrinsic 0/1."""
    if spot <= 0 or strike <= 0:
        raise ValueError(f"spot {spot} and strike {strike} must be > 0")
    if years <= 0 or volatility <= 0:
        in_the_money = spot > strike if is_call else spot < strike
        return (1.0 if is_call else -1.0) if in_the_money else 0.0
    d1 = (math.log(spot / strike) + (rate + 0.5 * volatility**2) * years) / (volatility * math.sqrt(years))
    return norm_cdf(d1) if is_call else norm_cdf(d1) - 1.0


def years_until(expiry_ns: int, now_ns: int) -> float:
    return max(expiry_ns - now_ns, 0) / 1e9 / SECONDS_PER_YEAR


@dataclass(frozen=True, slots=True)
class DeltaView:
    """Delta per underlying, and the underlyings whose delta is unknown (an option without a delta)."""

    delta: dict[str, float]
    unknown: frozenset[str]


def portfolio_delta(positions: Mapping[str, Decimal], option_deltas: Mapping[str, float],
                    multiplier: float = 100.0) -> DeltaView:
    """Sum delta per underlying: stocks count their shares, options ``qty * delta * multiplier``."""
    delta: dict[str, float] = {}
    unknown: set[str] = set()
    for symbol, qty in positions.items():
        contract = parse_occ(symbol)
        underlying = contract.underlying if contract else symbol
        if contract is None:
            contribution = float(qty)
        elif symbol in option_deltas:
            contribution = float(qty) * option_deltas[symbol] * multiplier
        else:
            unknown.add(underlying)
            continue
        delta[underlying] = delta.get(underlying, 0.0) + contribution
    return DeltaView(delta, frozenset(unknown))


def hedge_quantity(delta: float, limit: float, hedge_to: float) -> Decimal:
    """Signed whole shares to trade (negative: sell) when ``|delta| > limit``, else 0.

    The result brings delta to ``hedge_to * limit`` on the same side (0: flat,
    1: just at the limit), rounded so the hedged delta is never outside that target.
    """
    if abs(delta) <= limit:
        return Decimal(0)
    target = math.copysign(limit * hedge_to, delta)
    shares = Decimal(repr(abs(delta - target))).to_integral_value(rounding=ROUND_CEILING)
    if hedge_to == 0 and abs(abs(delta) - float(shares - 1)) < abs(abs(delta) - float(shares)):
        shares -= 1  # flattening: the nearest whole number leaves the smallest residual
    return -shares if delta > 0 else shares


def hedge_price(side: str, bid: float | None, ask: float | None, fair: float | None,
                slippage_bps: float) -> float | None:
    """A marketable limit: through the far touch (or fair price) by ``slippage_bps``."""
    touch = ask if side == "buy" else bid
    if touch is None or touch <= 0:
        touch = fair
    if touch is None or touch <= 0:
        return None
    factor = 1 + slippage_bps / 1e4 if side == "buy" else 1 - slippage_bps / 1e4
    return touch * factor
