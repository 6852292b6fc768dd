"""The one rule for every name that becomes part of a Redis key, a channel or a log line.

Two alphabets, both plain printable ASCII with no spaces, no CR/LF, no ``:``
(the key separator) and no glob characters (``*?[]``, which would make a
``SCAN``/``PSUBSCRIBE`` pattern match other processes' keys):

- **names** (``--name`` of agents, hubs and gateways, ``--namespace``, the
  ``agent`` field of an order intent): 1-64 characters of ``A-Z a-z 0-9 _ . -``;
- **symbols** (instruments, ``tf:symbols:wanted`` members): 1-32 characters of
  ``A-Z 0-9 . - /`` after upper-casing. Symbols never hold a lower-case letter
  or ``_``, which is why fixed keys such as ``tf:cache:portfolio`` or
  ``tf:cache:changed:<SYMBOL>`` cannot collide with a symbol's key.

``check_name`` / ``check_symbol`` raise :class:`NameRuleError` (a ``ValueError``)
whose message says what is allowed; callers wrap it in their own error
(:class:`~core.errors.ConfigError` for settings, ``IntentError`` for intents) or,
for data read from Redis, skip and count the value. The offending value is shown
with ``repr`` and cut to 40 characters, so a forged value cannot forge a log line.
"""

from __future__ import annotations

import re

NAME_MAX = 64
SYMBOL_MAX = 32
NAME_RULE = f"1-{NAME_MAX} characters of A-Z a-z 0-9 _ . -"
SYMBOL_RULE = f"1-{SYMBOL_MAX} characters of A-Z 0-9 . - /"

_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{NAME_MAX}}}")
_SYMBOL = re.compile(rf"[A-Z0-9.\-/]{{1,{SYMBOL_MAX}}}")


class NameRuleError(ValueError):
    """A name or symbol outside the allowed alphabet; the message says what is allowed."""


def shown(value: object) -> str:
    """``repr`` of an untrusted value, cut short: safe to put in a log line or an error."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


def is_symbol(value: object) -> bool:
    """True for an already upper-cased symbol."""
    return isinstance(value, str) and _SYMBOL.fullmatch(value) is not None


def check_name(value: object, what: str = "name") -> str:
    """``value`` if it follows the name rule, else NameRuleError."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    raise NameRuleError(f"{what} {shown(value)} is not allowed: use {NAME_RULE}")


def check_symbol(value: object, what: str = "symbol") -> str:
    """``value`` upper-cased if it follows the symbol rule, else NameRuleError."""
    if isinstance(value, str) and _SYMBOL.fullmatch(symbol := value.strip().upper()):
        return symbol
    raise NameRuleError(f"{what} {shown(value)} is not allowed: use {SYMBOL_RULE}")
