"""Who may act on an order, and when a reused ``client_order_id`` is a harmless resend.

- An exact resend of an intent (same id, same parameters) is ignored: agents retry.
- The same id with different parameters is refused visibly: silently keeping the
  first order would leave the sender believing the second one is working.
- An order belongs to the agent that placed it. Only its owner may cancel or
  replace it; the kill switch and the operator stream (``tf:orders:operator``,
  sender ``operator``) may cancel anyone's.
"""

from __future__ import annotations

from core.intents import OPERATOR, replace_difference, submit_difference
from core.orders import Intent, Order

__all__ = ["operator_refusal", "ownership_refusal", "replace_difference", "reuse_reason", "submit_difference"]


def reuse_reason(client_order_id: str, difference: str) -> str:
    return (f"client_order_id {client_order_id} was already used for a different order ({difference}); "
            "a new order needs a new id (an exact resend is ignored)")


def ownership_refusal(intent: Intent, order: Order, *, operator: bool) -> str | None:
    """Why ``intent.agent`` may not act on ``order``, or None if it may."""
    if operator or order.agent == intent.agent:
        return None
    return (f"order {order.client_order_id} belongs to agent {order.agent}; only its owner, the kill switch "
            f"or an operator command on the operator stream may {intent.kind} it")


def operator_refusal(intent: Intent, *, on_operator_stream: bool) -> str | None:
    """The operator stream carries only the operator's cancels; the agents' stream never carries them."""
    if on_operator_stream:
        if intent.agent != OPERATOR:
            return f"the operator stream takes only sender {OPERATOR!r}, not {intent.agent!r}"
        if intent.kind not in ("cancel", "cancel_all"):
            return f"the operator stream takes only cancel and cancel_all, not {intent.kind}"
        return None
    if intent.agent == OPERATOR:
        return f"sender name {OPERATOR!r} is reserved for the operator stream"
    return None
