"""Did any order get lost? The soak's own record of what agents sent and what the gateway reported.

While the soak runs, ``poll()`` copies every new entry of the intents and events streams (both are
trimmed at 100k entries, so they are read as they come, not at the end). At the end ``check()``
compares that record with the order state the gateway left in Redis:

- every order an agent sent (a submit, or the new order of a replace) has a ``tf:order:<id>`` hash
  (an order or a rejection): an intent without one was lost;
- each order's ``filled_qty`` equals the sum of the fills reported for it on the events stream, and
  its status is the last one reported: no fill or state change went missing between the two;
- each position's ``qty`` equals the signed sum of all fills in that symbol;
- ``tf:orders:open`` holds exactly the orders whose hash is not terminal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import redis

from core.keys import Keys
from core.orders import TERMINAL

BATCH = 5_000


@dataclass
class Ledger:
    client: redis.Redis
    keys: Keys
    sent: set[str] = field(default_factory=set)
    filled: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    last_status: dict[str, str] = field(default_factory=dict)
    position: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fill_events: int = 0
    _cursors: dict[str, str] = field(default_factory=dict)

    def _read(self, stream: str) -> list[dict[str, str]]:
        entries: list[dict[str, str]] = []
        while batch := self.client.xrange(stream, f"({self._cursors.get(stream, '0-0')}", "+", count=BATCH):
            self._cursors[stream] = batch[-1][0]
            entries.extend(fields for _, fields in batch)
        return entries

    def poll(self) -> None:
        for intent in self._read(self.keys.order_intents()):
            if intent.get("kind") in ("submit", "replace") and intent.get("client_order_id"):
                self.sent.add(intent["client_order_id"])
        for event in self._read(self.keys.order_events()):
            coid = event["client_order_id"]
            self.last_status[coid] = event["status"]
            if event.get("fill_qty"):
                qty = Decimal(event["fill_qty"])
                self.filled[coid] += qty
                self.fill_events += 1
                self.position[event["symbol"]] += qty if event["side"] == "buy" else -qty

    def check(self) -> list[str]:
        """What is wrong, one line each; empty when nothing was lost."""
        self.poll()
        problems = []
        ids = sorted(self.sent | set(self.last_status))
        pipe = self.client.pipeline(transaction=False)
        for coid in ids:
            pipe.hgetall(self.keys.order(coid))
        orders = dict(zip(ids, pipe.execute(), strict=True))
        problems += [f"lost: intent {coid} has no order hash" for coid in sorted(self.sent) if not orders[coid]]
        for coid, order in orders.items():
            if not order:
                continue
            if Decimal(order.get("filled_qty") or 0) != self.filled.get(coid, Decimal(0)):
                problems.append(f"order {coid}: filled_qty {order.get('filled_qty')} but fills add up to "
                                f"{self.filled.get(coid, 0)}")
            if coid in self.last_status and order["status"] != self.last_status[coid]:
                problems.append(f"order {coid}: status {order['status']} but last event {self.last_status[coid]}")
        for symbol, qty in self.position.items():
            held = Decimal(self.client.hget(self.keys.position(symbol), "qty") or 0)
            if held != qty:
                problems.append(f"position {symbol}: qty {held} but fills add up to {qty}")
        open_ids = set(self.client.smembers(self.keys.open_orders()))
        working = {coid for coid, order in orders.items() if order and order["status"] not in TERMINAL}
        problems += [f"order {coid}: open set and hash disagree" for coid in sorted(open_ids ^ working)]
        return problems

    def summary(self) -> dict[str, int]:
        statuses: dict[str, int] = defaultdict(int)
        for status in self.last_status.values():
            statuses[status] += 1
        return {"orders_sent": len(self.sent), "fill_events": self.fill_events, **statuses}
