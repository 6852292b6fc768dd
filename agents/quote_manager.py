"""QuoteManager: one bid and one ask working around fair price, per instrument.

Runs on changes of ``fair_price`` and ``spread`` in the cache (and on quotes,
so it notices when ``fair_price`` goes stale). Each run reads fair price,
spread and inventory (the position), computes the target quotes with the pure
:func:`agents.pricing.target_quotes`, and for each side submits, replaces
(only when the target moved more than ``tolerance``) or cancels.

Safety:

- a ``fair_price`` older than ``max_data_age`` pulls both quotes;
- while ``tf:risk:halt`` is set it sends nothing (the gateway cancels open
  orders itself); with ``tf:risk:reduce_only`` it quotes only the side that
  shrinks the position;
- a rejected order backs that side off (doubling up to 30 s) instead of
  resubmitting at quote rate;
- at start and at stop it cancels this agent's open orders on its instruments.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from agents.base import TradingAgent
from agents.cli import run_agent_module
from agents.events import Event
from agents.pricing import Action, Level, QuoteRules, Side, TargetQuotes, plan_side, target_quotes, to_decimal
from cache import DataCache
from core.clock import Clock, SystemClock
from core.errors import ConfigError, OrderError
from core.ratelimit import RateLimitedLog, TokenBucket
from core.settings import option

SIDES: tuple[Side, Side] = ("buy", "sell")
MAX_BACKOFF_NS = 30_000_000_000
#: An order the gateway has not recorded yet after this long is presumed lost.
PENDING_TIMEOUT_NS = 5_000_000_000
STOP_WAIT_S = 2.0


@dataclass(frozen=True, kw_only=True)
class QuoteManagerParams:
    quote_size: float = option(100.0, help="shares per quote")
    tolerance: float = option(0.01, help="requote only when the target price moved more than this ($)")
    min_spread: float = option(0.02, help="narrowest bid-ask width quoted ($)")
    skew_per_share: float = option(0.0001, help="$ both quotes move down per share long (up per share short)")
    max_inventory: float = option(500.0, help="never quote a side whose fill would take |position| beyond this")
    max_data_age_ns: int = option("2s", key="max_data_age", duration=True,
                                  help="pull the quotes when fair_price is older than this")
    reject_backoff_ns: int = option("250ms", key="reject_backoff", duration=True,
                                    help="pause of a side after a rejection (doubles per repeat, max 30s)")
    max_order_rate: float = option(2.0, help="new orders + replaces per second this agent sends at most "
                                   "(stay under the gateway's order_rate, leaving room for hedges)")
    order_burst: int = option(6, help="orders this agent may send back to back")

    def __post_init__(self) -> None:
        if self.quote_size <= 0:
            raise ConfigError("setting 'quote_size' must be > 0 shares, e.g. 100")
        if self.tolerance < 0 or self.min_spread < 0 or self.skew_per_share < 0:
            raise ConfigError("settings 'tolerance', 'min_spread' and 'skew_per_share' must be >= 0")
        if self.max_inventory <= 0:
            raise ConfigError("setting 'max_inventory' must be > 0 shares, e.g. 500")
        if self.max_order_rate <= 0 or self.order_burst < 1:
            raise ConfigError("settings 'max_order_rate' must be > 0 and 'order_burst' >= 1")

    def rules(self) -> QuoteRules:
        return QuoteRules(quote_size=to_decimal(self.quote_size), min_spread=to_decimal(self.min_spread),
                          skew_per_share=to_decimal(self.skew_per_share),
                          max_inventory=to_decimal(self.max_inventory))


@dataclass
class SideState:
    """Our working order on one side of one instrument, as we last sent it."""

    client_order_id: str | None = None
    level: Level | None = None
    sent_ns: int = 0
    rejects: int = 0
    backoff_until_ns: int = 0

    def forget(self) -> None:
        self.client_order_id, self.level = None, None


@dataclass
class QuoteStats:
    submitted: int = 0
    replaced: int = 0
    canceled: int = 0
    rejected: int = 0
    filled: int = 0
    over_budget: int = 0


class QuoteManager(TradingAgent):
    """Keeps one bid and one ask around fair price, skewed against inventory."""

    Params = QuoteManagerParams
    defaults: ClassVar[Mapping[str, Any]] = {"throttle": "100ms", "on_cache": ("fair_price", "spread")}

    def __init__(self, config: Mapping[str, Any] | None = None, data_cache: DataCache | None = None, *,
                 clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(config, data_cache, **kwargs)
        self.params: QuoteManagerParams
        self.rules = self.params.rules()
        self.tolerance = to_decimal(self.params.tolerance)
        self.clock = clock or SystemClock()
        self.stats = QuoteStats()
        self.sides = {(symbol, side): SideState() for symbol in self.instruments for side in SIDES}
        self.halted: dict[str, bool] = {}
        self._reject_log = RateLimitedLog(self.log)
        self.budget = TokenBucket(self.params.max_order_rate, self.params.order_burst, self.clock)
        self._risk_keys: tuple[object, tuple[str, str]] = (None, ("", ""))

    async def on_start(self) -> None:
        for symbol in self.instruments:
            await self.trading.cancel_all(symbol)  # leftovers of an earlier run of this agent

    async def on_stop(self) -> None:
        working = [s.client_order_id for s in self.sides.values() if s.client_order_id]
        for symbol in self.instruments:
            await self.trading.cancel_all(symbol)
        # wait (bounded, all at once) for the gateway to confirm, so a stopped agent leaves no quote
        await asyncio.gather(*(self.trading.wait_for(coid, timeout_s=STOP_WAIT_S) for coid in working),
                             return_exceptions=True)
        self.log.info("quote manager %s stopped: %s", self.name, self.stats)

    async def run(self, data: Event) -> None:
        symbol = data.instrument
        if symbol is None or (symbol, "buy") not in self.sides:
            return
        halt, reduce_only = await self._risk_state()
        if halt or self.halted.get(symbol, False):
            if await self._paused_by_halt(symbol, halt):
                return
        else:  # what _paused_by_halt does when no halt is set or lifted, without awaiting it per run
            self.halted[symbol] = False
        targets = await self.targets(symbol, reduce_only=reduce_only)
        for side in SIDES:
            await self._sync_side(symbol, side, targets.for_side(side))

    async def targets(self, symbol: str, *, reduce_only: bool = False) -> TargetQuotes:
        """The quotes we want now; none when fair price is missing or stale."""
        max_age_ns = self.params.max_data_age_ns
        fair = await self.data_cache.get_float(symbol, "fair_price", max_age_ns=max_age_ns)
        if fair is None:
            return TargetQuotes(None, None)
        spread = await self.data_cache.get_float(symbol, "spread", max_age_ns=max_age_ns) or 0.0
        position = await self.trading.position(symbol)
        return target_quotes(to_decimal(fair), to_decimal(spread), to_decimal(position.qty), self.rules,
                             reduce_only=reduce_only)

    # risk state ----------------------------------------------------------------

    async def _risk_state(self) -> tuple[bool, bool]:
        keys = self.data_cache.keys
        if self._risk_keys[0] is not keys:  # the names, once per namespace (the runtime binds the cache)
            self._risk_keys = (keys, (keys.risk_halt(), keys.risk_reduce_only()))
        halt, reduce_only = await self.data_cache.client.mget(self._risk_keys[1])
        return halt is not None, reduce_only is not None

    async def _paused_by_halt(self, symbol: str, halt: bool) -> bool:
        """Under a halt, send nothing: the gateway cancels everything and would reject us."""
        was_halted = self.halted.get(symbol, False)
        self.halted[symbol] = halt
        if halt:
            if not was_halted:
                self.log.warning("%s: trading halted (risk halt key set): not quoting", symbol)
                for side in SIDES:
                    self.sides[(symbol, side)].forget()
            return True
        if was_halted:
            self.log.info("%s: halt lifted: quoting again", symbol)
            await self.trading.cancel_all(symbol)  # anything the gateway had not cancelled yet
        return False

    # one side --------------------------------------------------------------------

    async def _sync_side(self, symbol: str, side: Side, target: Level | None) -> None:
        state = self.sides[(symbol, side)]
        await self._refresh(state)
        now_ns = self.clock.monotonic_ns()
        if now_ns < state.backoff_until_ns:
            target = None  # pull rather than keep a quote we could not replace
        action = plan_side(state.level, target, self.tolerance)
        working_id = state.client_order_id
        if action in (Action.SUBMIT, Action.REPLACE) and not self.budget.take():
            self.stats.over_budget += 1  # keep the current quote; a later run requotes
            return
        if action is Action.SUBMIT and target is not None:
            await self._submit(symbol, side, target, state, now_ns)
        elif action is Action.REPLACE and target is not None and working_id is not None:
            await self._replace(working_id, target, state, now_ns)
        elif action is Action.CANCEL and working_id is not None:
            await self._cancel(working_id, state)

    async def _refresh(self, state: SideState) -> None:
        """Forget our order once it is no longer working; back off after a rejection."""
        if state.client_order_id is None:
            return
        order = await self.trading.order(state.client_order_id)
        now_ns = self.clock.monotonic_ns()
        if order is None:
            if now_ns - state.sent_ns > PENDING_TIMEOUT_NS:
                self.log.warning("order %s never reached the gateway; forgetting it", state.client_order_id)
                state.forget()
            return
        if order.is_open:
            return
        if order.status == "rejected":
            self._back_off(state, now_ns, order.reject_reason)
        else:
            state.rejects = 0
            self.stats.filled += order.status == "filled"
        state.forget()

    def _back_off(self, state: SideState, now_ns: int, reason: object) -> None:
        state.rejects += 1
        self.stats.rejected += 1
        delay_ns = min(self.params.reject_backoff_ns * 2 ** (state.rejects - 1), MAX_BACKOFF_NS)
        state.backoff_until_ns = now_ns + delay_ns
        self._reject_log.warning("reject", "order %s rejected (%s); pausing that side %.2fs",
                                 state.client_order_id, reason, delay_ns / 1e9)

    async def _submit(self, symbol: str, side: Side, target: Level, state: SideState, now_ns: int) -> None:
        client_order_id = await self.trading.submit_limit(symbol, side, target.qty, target.price)
        state.client_order_id, state.level, state.sent_ns = client_order_id, target, now_ns
        self.stats.submitted += 1

    async def _replace(self, working_id: str, target: Level, state: SideState, now_ns: int) -> None:
        try:
            new_id = await self.trading.replace(working_id, qty=target.qty, limit_price=target.price)
        except OrderError as e:
            # typically filled or cancelled meanwhile: start over on the next run
            self.log.debug("replace of %s failed: %s", working_id, e)
            state.forget()
            return
        state.client_order_id, state.level, state.sent_ns = new_id, target, now_ns
        self.stats.replaced += 1

    async def _cancel(self, working_id: str, state: SideState) -> None:
        with contextlib.suppress(OrderError):
            await self.trading.cancel(working_id)
        state.forget()
        self.stats.canceled += 1

    @property
    def working(self) -> dict[tuple[str, str], Decimal | None]:
        """Price of each working quote, for inspection."""
        return {key: s.level.price if s.level else None for key, s in self.sides.items()}


if __name__ == "__main__":
    run_agent_module(QuoteManager)
