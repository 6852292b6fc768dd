"""The agents' TradingClient: ids, validation, state reads, waiting, and its wiring into serve_agents."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from agents.base import TradingAgent
from agents.events import Event
from agents.serve import serve_agents
from agents.trading import Order, Position, TradingClient
from core.connection import ProcessSettings
from core.settings import build
from tests.execution_helpers import KEYS, sim_stack
from tests.helpers import eventually_async


async def test_ids_are_unique_prefixed_and_bad_numbers_fail_before_sending(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading("quoter")
        first, second = trading.new_client_order_id(), trading.new_client_order_id()
        assert first != second and first.startswith("quoter-")
        assert TradingClient(stack.client, KEYS, "quoter").new_client_order_id() != first  # across restarts too
        for bad in ("-1", 0, "abc", float("nan")):
            with pytest.raises(ValueError):
                await trading.submit_limit("AAPL", "buy", bad, 10)
        with pytest.raises(ValueError):
            await trading.replace("x")
        assert await stack.client.xlen(KEYS.order_intents()) == 0


async def test_state_reads_and_wait_for_timeout(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        await stack.quote("MSFT", 199.99, 100, 200.01, 100)
        buy = await trading.submit_limit("AAPL", "buy", 10, 100.01)
        rest_aapl = await trading.submit_limit("aapl", "buy", 5, 99)
        rest_msft = await trading.submit_limit("MSFT", "sell", 5, 201)
        await trading.wait_for(buy)
        await trading.wait_for(rest_msft, {"new"})
        assert (await trading.wait_for(rest_aapl, {"new"})).symbol == "AAPL"
        assert [o.client_order_id for o in await trading.open_orders("AAPL")] == [rest_aapl]
        assert {o.client_order_id for o in await trading.open_orders()} == {rest_aapl, rest_msft}
        assert await trading.position("AAPL") == Position("AAPL", Decimal(10), Decimal("100.01"), Decimal(0),
                                                          Decimal(0), (await trading.position("AAPL")).updated_ns)
        assert (await trading.position("NONE")).qty == 0
        assert set(await trading.positions()) == {"AAPL"}
        assert await trading.order("never-sent") is None
        with pytest.raises(TimeoutError):
            await trading.wait_for(rest_aapl, {"filled"}, timeout_s=0.3)
        await trading.aclose()


async def test_sync_callbacks_work_too(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        trading = stack.trading()
        seen: list[str] = []
        trading.on_update(lambda order: seen.append(order.status))
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        coid = await trading.submit_limit("AAPL", "buy", 10, 100.01)
        await trading.wait_for(coid)
        await eventually_async(lambda: _done(seen), message="callbacks for new and filled")
        await trading.aclose()


async def _done(seen: list[str]) -> bool:
    return seen[-2:] == ["new", "filled"]


class Quoter(TradingAgent):
    """Places one bid at start; cancels everything at stop."""

    async def on_start(self) -> None:
        self.placed = await self.trading.submit_limit("AAPL", "buy", 1, 99)

    async def run(self, data: Event) -> None:
        return None

    async def on_stop(self) -> None:
        await self.trading.cancel_all()


async def test_serve_agents_gives_each_agent_a_trading_client(redis_url: str) -> None:
    async with sim_stack(redis_url) as stack:
        await stack.quote("AAPL", 99.99, 100, 100.01, 100)
        agent = Quoter({"instruments": ["AAPL"], "name": "quoter"})
        stop = asyncio.Event()
        task = asyncio.create_task(serve_agents([agent], build(ProcessSettings, {"redis_url": redis_url}), stop))
        watcher = stack.trading("watcher")
        await eventually_async(lambda: _has_attr(agent, "placed"), message="the agent's first order")
        order: Order = await watcher.wait_for(agent.placed, {"new"})
        assert order.agent == "quoter"
        stop.set()
        await asyncio.wait_for(task, 10)
        assert (await watcher.wait_for(agent.placed)).status == "canceled"
        await watcher.aclose()


async def _has_attr(obj: object, name: str) -> bool:
    return hasattr(obj, name)
