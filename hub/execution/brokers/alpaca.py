"""The Alpaca broker: alpaca-py's TradingClient (REST) and TradingStream (trade_updates).

- Every order is sent with its ``client_order_id``; Alpaca refuses a second order with
  the same id, and an order left ``pending_new`` by a crash is looked up by that id
  before anything is sent again (``resume``), so a replayed intent never doubles.
- Fills are derived from Alpaca's cumulative ``filled_qty``/``filled_avg_price``, so
  a duplicated, replayed or reconciled update is applied once.
- API errors become rejections with a reason: 403 (buying power, account blocked),
  422 (invalid order), 429 (rate limit); 5xx and connection errors leave the intent
  pending and are retried.
- On start, and every ``alpaca_reconcile`` interval, open orders and positions are
  reconciled with the account (updates missed while the stream was down are applied).

The REST client is synchronous: calls run in a worker thread, paced by a token bucket
under Alpaca's 200 requests/minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import requests

from core.clock import SystemClock
from core.errors import OrderError
from core.orders import EXTERNAL_AGENT, PENDING_CANCEL, REPLACED, TERMINAL, ZERO, Order, Position
from core.ratelimit import LocalRateGate, RateGate, RateLimitedLog, TokenBucket
from core.tasks import stopped_within
from hub.execution.brokers.alpaca_settings import AlpacaBrokerSettings
from hub.execution.brokers.base import BrokerUnavailable
from hub.execution.store import Fill, OrderStore

with warnings.catch_warnings():  # alpaca-py 0.44's trading package imports websockets.legacy
    warnings.simplefilter("ignore", DeprecationWarning)
    from alpaca.common.exceptions import APIError
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
    from alpaca.trading.models import Order as AlpacaOrder
    from alpaca.trading.requests import GetOrdersRequest, LimitOrderRequest, MarketOrderRequest, ReplaceOrderRequest
    from alpaca.trading.stream import TradingStream

log = logging.getLogger(__name__)
RECONCILE_INTERVAL_S = 30.0
#: Requests allowed back to back under the per-minute pace.
PACER_BURST = 10
STREAM_CONNECT_WAIT_S = 5.0


class AlpacaRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def reason(self) -> str:
        what = {403: "alpaca refused (403)", 422: "alpaca rejected the order (422)",
                429: "alpaca rate limit (429): slow down and retry"}.get(self.status, f"alpaca error {self.status}")
        return f"{what}: {self.message}"


def _api_error(e: APIError) -> AlpacaRejected | BrokerUnavailable:
    status = e.status_code or 0
    try:
        message = str(e.message)
    except (ValueError, KeyError, TypeError):
        message = str(e)[:200]
    if status >= 500 or status == 0:
        return BrokerUnavailable(f"alpaca {status}: {message}")
    return AlpacaRejected(status, message)


def _dec(value: object) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else ZERO


def _value(enum_or_str: Any) -> str:
    return str(getattr(enum_or_str, "value", enum_or_str))


#: Alpaca's largest page of GET /v2/orders.
RECENT_ORDERS_LIMIT = 500


class AlpacaBroker:
    def __init__(self, store: OrderStore, settings: AlpacaBrokerSettings, pacer: RateGate | None = None) -> None:
        """``pacer``: the request bucket; the gateway process passes one kept in Redis, so a crash loop's
        restarts (each reconciling) cannot add up past Alpaca's limit."""
        self._store = store
        self._settings = settings
        self._rest = TradingClient(settings.api_key, settings.secret_key, paper=True, url_override=settings.base_url)
        # A 429 is an answer for the agent (a rejection), not something to sleep on in a thread.
        self._rest._retry_codes = [504]
        self._stream = TradingStream(settings.api_key, settings.secret_key, paper=True,
                                     url_override=settings.trade_stream_url)
        self._stream.subscribe_trade_updates(self._on_trade_update)
        self._pacer = pacer or LocalRateGate(TokenBucket(settings.requests_per_min / 60.0, PACER_BURST, SystemClock()))
        self._fractionable: dict[str, bool] = {}
        self._lock = asyncio.Lock()
        self._stream_task: asyncio.Task[None] | None = None
        self._log = RateLimitedLog(log)
        self.updates = 0
        self.requests = 0

    def status(self) -> Mapping[str, str | int | float]:
        return {"trade_updates": self.updates, "requests": self.requests}

    # plumbing ---------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        while not await self._pacer.take(1):
            await asyncio.sleep(0.05)
        self.requests += 1
        try:
            # On timeout the worker thread is abandoned; a resubmission is safe (lookup by client_order_id first).
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self._settings.request_timeout_s)
        except TimeoutError:
            raise BrokerUnavailable(f"alpaca did not answer within {self._settings.request_timeout_s:g}s") from None
        except APIError as e:
            raise _api_error(e) from None
        except requests.RequestException as e:
            raise BrokerUnavailable(f"alpaca unreachable: {type(e).__name__}") from None

    # requests ---------------------------------------------------------------------------

    async def submit(self, order: Order) -> None:
        await self._send_new(await self._store.record(order, "pending_new"))

    async def _send_new(self, order: Order) -> None:
        try:
            request = _order_request(order)
        except OrderError as e:
            return await self._reject(order, str(e))
        try:
            remote = await self._call(self._rest.submit_order, request)
        except AlpacaRejected as e:
            if e.status == 422 and "client_order_id" in e.message:  # it reached Alpaca before: adopt it
                await self._lookup(order)
            else:
                await self._reject(order, e.reason)
            return
        await self._apply_remote(order.client_order_id, remote)

    async def _reject(self, order: Order, reason: str) -> None:
        async with self._lock:
            await self._store.reject(order, reason)

    async def _lookup(self, order: Order) -> bool:
        """Refresh ``order`` from Alpaca by client_order_id; False if Alpaca has never seen it."""
        try:
            remote = await self._call(self._rest.get_order_by_client_id, order.client_order_id)
        except AlpacaRejected as e:
            if e.status == 404:
                return False
            raise BrokerUnavailable(e.reason) from None
        await self._apply_remote(order.client_order_id, remote)
        return True

    async def resume(self, order: Order) -> None:
        if await self._lookup(order):
            return
        old = await self._store.get(order.replaces) if order.replaces else None
        if old is not None:
            await self._send_replace(old, order)
        else:
            await self._send_new(order)

    async def cancel(self, order: Order) -> None:
        if not order.broker_order_id and not await self._lookup(order):
            return await self._reject(order, "canceled before it reached alpaca")
        current = await self._store.get(order.client_order_id)
        if current is None or not current.is_open:
            return None
        try:
            await self._call(self._rest.cancel_order_by_id, current.broker_order_id)
        except AlpacaRejected:  # not cancelable any more (filled meanwhile): take Alpaca's word for its state
            await self._lookup(current)
            return None
        await self._mark(current.client_order_id, PENDING_CANCEL)

    async def _mark(self, client_order_id: str, status: str, **changes: Any) -> None:
        async with self._lock:
            current = await self._store.get(client_order_id)
            if current is not None and current.is_open:
                await self._store.record(current.evolve(status=status, **changes), status)

    async def replace(self, old: Order, new: Order) -> None:
        await self._send_replace(old, await self._store.record(new, "pending_new"))

    async def _send_replace(self, old: Order, new: Order) -> None:
        request = ReplaceOrderRequest(qty=int(new.qty) if new.qty != old.qty else None,
                                      limit_price=float(new.limit_price) if new.limit_price is not None else None,
                                      client_order_id=new.client_order_id)
        try:
            remote = await self._call(self._rest.replace_order_by_id, old.broker_order_id, request)
        except AlpacaRejected as e:
            await self._reject(new, e.reason)
            return
        await self._apply_remote(new.client_order_id, remote)
        await self._mark(old.client_order_id, REPLACED, replaced_by=new.client_order_id)

    async def fractionable(self, symbol: str) -> bool:
        """The asset's ``fractionable`` flag, asked once per symbol and process (GET /v2/assets/{symbol})."""
        if symbol not in self._fractionable:
            try:
                asset = await self._call(self._rest.get_asset, symbol)
            except AlpacaRejected as e:
                if e.status != 404:
                    raise BrokerUnavailable(e.reason) from None
                self._fractionable[symbol] = False  # unknown asset: the order itself will be refused too
            else:
                self._fractionable[symbol] = bool(getattr(asset, "fractionable", False))
        return self._fractionable[symbol]

    async def cancel_all(self, orders: Sequence[Order]) -> None:
        if {o.client_order_id for o in orders} != set(self._store.open):
            for order in orders:
                await self.cancel(order)
            return
        responses = await self._call(self._rest.cancel_orders)  # the whole book: one request
        for response in responses:
            body = response.body or {}
            if body.get("client_order_id"):  # the order as the cancel left it (canceled or pending_cancel)
                await self._apply_remote(str(body["client_order_id"]), AlpacaOrder(**body))

    # updates from Alpaca ------------------------------------------------------------------

    async def _on_trade_update(self, update: Any) -> None:
        self.updates += 1
        try:
            await self._apply_remote(update.order.client_order_id, update.order)
        except Exception:  # one bad update must not kill the stream; reconcile repairs state
            self._log.error("update", "could not apply a trade update", exc_info=None)
            log.debug("trade update failed", exc_info=True)

    async def _apply_remote(self, client_order_id: str, remote: Any) -> None:
        """Bring the stored order up to Alpaca's (cumulative) view of it."""
        async with self._lock:
            local = await self._store.get(client_order_id)
            if local is None:
                local = await self._store.record(_adopt(remote), "new")
            if local.status in TERMINAL:
                return
            local = await self._apply_fills(local, remote)
            status = _value(remote.status)
            if status in ("filled", "partially_filled") or _stale(local.status, status):
                status = local.status  # our fill accounting decides these two; no going back
            if status != local.status or local.broker_order_id != str(remote.id):
                await self._store.record(local.evolve(status=status, broker_order_id=str(remote.id)),
                                         _event_name(status))

    async def _apply_fills(self, local: Order, remote: Any) -> Order:
        remote_filled = _dec(remote.filled_qty)
        delta = remote_filled - local.filled_qty
        if delta <= 0:
            return local
        remote_notional = remote_filled * _dec(remote.filled_avg_price)
        local_notional = local.filled_qty * (local.filled_avg_price or ZERO)
        price = (remote_notional - local_notional) / delta
        return await self._store.fill(local.evolve(broker_order_id=str(remote.id)), Fill(delta, price))

    # start, reconcile, stream ---------------------------------------------------------------

    async def start(self) -> None:
        """Listen to trade_updates first, then reconcile: nothing that happens meanwhile is missed."""
        # _run_forever is the coroutine behind TradingStream.run(); awaiting it keeps the stream on our loop.
        self._stream_task = asyncio.create_task(self._stream._run_forever(),  # type: ignore[no-untyped-call]
                                                name="alpaca-trade-updates")
        deadline = asyncio.get_running_loop().time() + STREAM_CONNECT_WAIT_S
        while not self._stream._running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        if not self._stream._running:
            log.warning("trade_updates stream not connected after %ss; reconciling anyway (it keeps retrying)",
                        STREAM_CONNECT_WAIT_S)
        await self.reconcile()

    async def reconcile(self) -> None:
        """Apply Alpaca's view of open orders and positions to the store."""
        remote_open = await self._call(self._rest.get_orders, GetOrdersRequest(status=QueryOrderStatus.OPEN,
                                                                                limit=500))
        seen = set()
        for remote in remote_open:
            seen.add(remote.client_order_id)
            await self._apply_remote(remote.client_order_id, remote)
        for order in list(self._store.open.values()):
            if order.client_order_id not in seen and not await self._lookup(order):
                if order.status == "pending_new":
                    await self.resume(order)
                else:
                    await self._reject(order, "not found at alpaca when reconciling")
        await self._reconcile_positions()
        log.info("reconciled with alpaca: %d open orders, %d positions", len(self._store.open),
                 len(self._store.positions))

    async def recent_orders(self, since_ns: int) -> list[Order]:
        """Alpaca's orders created since ``since_ns``, any status, with fills (hub.execution.reconcile)."""
        after = datetime.fromtimestamp(since_ns / 1e9, UTC)
        remote = await self._call(self._rest.get_orders, GetOrdersRequest(status=QueryOrderStatus.ALL, after=after,
                                                                           limit=RECENT_ORDERS_LIMIT))
        if len(remote) >= RECENT_ORDERS_LIMIT:  # Alpaca's page limit: older ones in the window are not seen
            log.warning("reconcile: alpaca returned its maximum of %d orders since %s; older orders in that window "
                        "are not checked", RECENT_ORDERS_LIMIT, after.isoformat())
        return [_adopt(r).evolve(status=_value(r.status), filled_qty=_dec(r.filled_qty or 0),
                                 filled_avg_price=_dec(r.filled_avg_price) if r.filled_avg_price else None)
                for r in remote if r.client_order_id]

    async def _reconcile_positions(self) -> None:
        remote = {p.symbol: p for p in await self._call(self._rest.get_all_positions)}
        async with self._lock:
            for symbol in set(remote) | set(self._store.positions):
                local = self._store.position(symbol)
                if symbol in remote:
                    qty = abs(_dec(remote[symbol].qty)) * (-1 if _value(remote[symbol].side) == "short" else 1)
                    avg = _dec(remote[symbol].avg_entry_price)
                else:
                    qty, avg = ZERO, ZERO
                if (qty, avg) != (local.qty, local.avg_price):
                    log.warning("position %s: alpaca has %s @ %s, we had %s; taking alpaca's", symbol, qty, avg,
                                local.qty)
                    await self._store.set_position(Position(symbol, qty, avg, local.realized_pnl, local.fees,
                                                            self._store.clock.time_ns()))

    async def run(self, stop: asyncio.Event) -> None:
        stream = self._stream_task
        try:
            while not await stopped_within(stop, RECONCILE_INTERVAL_S):
                with contextlib.suppress(BrokerUnavailable):
                    await self.reconcile()
        finally:
            await self._stream.stop_ws()
            await self._stream.close()
            if stream is not None:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(stream, 3.0)

    async def close(self) -> None:
        try:
            await self._stream.stop_ws()
            await self._stream.close()
        finally:  # even if the SDK's close fails: no old trade-updates task may write into a rebuilt store
            if self._stream_task is not None and not self._stream_task.done():
                self._stream_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._stream_task


def _order_request(order: Order) -> LimitOrderRequest | MarketOrderRequest:
    common = {"symbol": order.symbol, "qty": float(order.qty), "side": OrderSide(order.side),
              "time_in_force": TimeInForce(order.time_in_force), "client_order_id": order.client_order_id}
    if order.order_type == "market":
        return MarketOrderRequest(**common)
    if order.limit_price is None:  # decode_intent guarantees one; a damaged stored order must not pass
        raise OrderError(f"limit order {order.client_order_id} has no limit price")
    return LimitOrderRequest(limit_price=float(order.limit_price), **common)


#: Early statuses in the order Alpaca moves through them; a REST answer can arrive after the stream's news.
_EARLY = {"pending_new": 0, "accepted": 1, "new": 2, "pending_cancel": 3, "pending_replace": 3, "partially_filled": 4}


def _stale(local_status: str, remote_status: str) -> bool:
    """True when ``remote_status`` is older news than what the store already has."""
    return _EARLY.get(remote_status, 99) < _EARLY.get(local_status, -1)


def _event_name(status: str) -> str:
    return {"accepted": "new", "pending_new": "new"}.get(status, status)


def _adopt(remote: Any) -> Order:
    """An order placed outside the gateway (found when reconciling): tracked under agent 'external'."""
    kind = _value(remote.type or remote.order_type)
    return Order(client_order_id=remote.client_order_id, agent=EXTERNAL_AGENT, symbol=str(remote.symbol),
                 side="sell" if _value(remote.side) == "sell" else "buy",
                 order_type="market" if kind == "market" else "limit", qty=_dec(remote.qty),
                 limit_price=_dec(remote.limit_price) if remote.limit_price is not None else None,
                 time_in_force=_value(remote.time_in_force), status="new", broker_order_id=str(remote.id),
                 created_ns=int(remote.created_at.timestamp() * 1e9))

