"""Redis ACL users per role, generated from the key layout in core.keys so the two cannot drift.

``python -m core.acl --var var`` (run by ``deploy/setup-redis-acl.sh``, which ``make run`` calls)
keeps one password per role in ``var/secrets/<role>.password`` (mode 0600, generated once,
kept on later runs) and writes ``var/redis/users.acl`` (mode 0600, SHA-256 hashes only), which
deploy/redis.conf loads with ``aclfile``. No client gets in without a password (see render_acl
for why the default user shares admin's).

Roles and what they may do (docs/security.md has the table):

``hub``        publish quotes/trades, write ``tf:quote:*`` and its heartbeat, read symbol demand
``agent``      read market data, caches, risk flags, orders and positions; write ``tf:cache:*``
               and its heartbeat; add symbol demand; XADD order intents (nothing else on the stream);
               subscribe to the exec channel but never publish on it; never write orders or risk keys
``gateway``    own the order state (intents group, events, ``tf:order:*``, positions, exec channel)
``operator``   read everything; set/clear the kill switch and reduce-only; XADD the operator stream (cancel-all)
``dashboard``  read-only operator
``admin``      everything (for a person with redis-cli; no process uses it)

Redis 7 selectors (the parenthesised groups) give each write right only on its own keys: a
command is allowed when one group allows both the command and every key and channel it names,
so an agent's ``+xadd`` reaches only the intents stream and its ``+publish`` only the cache and
demand channels.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.keys import DEFAULT_NAMESPACE, Keys

ROLES = ("hub", "agent", "gateway", "operator", "dashboard", "admin")

#: What every client needs: connect handshake, PING, MULTI/EXEC (redis-py pipelines are transactions).
_BASE = ("-@all", "+ping", "+select", "+echo", "+multi", "+exec", "+discard", "+client|setname", "+client|id", "+reset",
         "+time")  # TIME: the rate buckets and leases run on Redis's clock
_SUBSCRIBE = ("+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe")
_READ = ("+get", "+mget", "+exists", "+type", "+ttl", "+pttl", "+hget", "+hmget", "+hgetall", "+hlen", "+hexists",
         "+smembers", "+sismember", "+scard", "+scan", "+xlen", "+xrange", "+xrevrange", "+xinfo|groups",
         "+xinfo|stream")
_SCRIPTS = ("+eval", "+evalsha", "+script|load", "+script|exists")
_HEARTBEAT = (*_SCRIPTS, "+hsetnx", "+hset", "+pexpire", "+hget", "+hgetall", "+del", "+exists")


def _read(*patterns: str) -> tuple[str, ...]:
    return tuple(f"%R~{p}" for p in patterns)


def _channels(*patterns: str) -> tuple[str, ...]:
    return tuple(f"&{p}" for p in patterns)


def _selector(*rules: str) -> str:
    return "(" + " ".join(rules) + ")"


def _heartbeat(pattern: str) -> str:
    return _selector(f"~{pattern}", *_HEARTBEAT)


def role_rules(role: str, keys: Keys) -> tuple[str, ...]:
    """The ACL SETUSER rules of ``role`` (without ``on`` and the password)."""
    k = keys
    market_channels = _channels(k.quote_channel("*"), k.trade_channel("*"))
    risk = (k.risk_halt(), k.risk_reduce_only())
    order_state = (k.order("*"), k.open_orders(), k.position("*"))
    if role == "hub":
        return (*_BASE, *_SUBSCRIBE, *_channels(k.symbols_control_channel()), *_READ,
                *_read(k.wanted_symbols(), k.latest_quote("*"), k.agent("*")),  # agents' heartbeats: their demand
                _selector(f"~{k.latest_quote('*')}", *market_channels, "+publish", "+hset", "+del"),
                _selector(f"~{k.wanted_symbols()}", "+srem", "+sadd"),  # lapsed and bad demand
                _selector(f"~{k.hub_leader('*')}", *_SCRIPTS, "+set", "+get", "+pexpire", "+del"),  # --leader-lock
                _heartbeat(k.hub("*")))
    if role == "agent":
        return (*_BASE, *_SUBSCRIBE, *market_channels,
                *_channels(k.cache_changed_channel("*"), k.exec_channel()), *_READ,
                *_read(k.latest_quote("*"), k.cache("*"), *risk, *order_state, k.agent("*"), k.wanted_symbols()),
                _selector(f"~{k.cache('*')}", *_channels(k.cache_changed_channel("*")), *_SCRIPTS,
                          "+hset", "+hdel", "+del", "+publish"),
                _selector(f"~{k.wanted_symbols()}", *_channels(k.symbols_control_channel()), "+sadd", "+publish"),
                _selector(f"~{k.order_intents()}", "+xadd"),
                _selector(f"~{k.agent_members('*')}", *_SCRIPTS, "+zadd", "+zrem", "+zrange",  # --shard auto
                          "+zremrangebyscore", "+pexpire"),
                _heartbeat(k.agent("*")))
    if role == "gateway":
        return (*_BASE, *_SUBSCRIBE, *market_channels, *_READ, *_read(k.latest_quote("*"), *risk),
                _selector(*(f"~{p}" for p in (*order_state, k.order_intents(), k.operator_intents(), k.order_events(),
                                              k.order_rate_bucket(), k.broker_rate_bucket())),
                          *_channels(k.exec_channel()), "+@read", "+@write", "+@stream", "+@hash", "+@set",
                          *_SCRIPTS, "+publish", "-@dangerous"),
                _heartbeat(k.gateway("*")))
    if role in ("operator", "dashboard"):
        everything = f"{keys.namespace}:*"
        rules = (*_BASE, *_SUBSCRIBE, f"&{everything}", *_READ, "+xread", f"%R~{everything}")  # xread: fills
        if role == "dashboard":
            return rules
        return (*rules, _selector(*(f"~{p}" for p in risk), "+set", "+del"),
                _selector(f"~{k.operator_intents()}", "+xadd"))  # operator cancel-all: its own stream
    if role == "admin":
        return ("~*", "&*", "+@all")
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl(passwords: Mapping[str, str], keys: Keys) -> str:
    """The aclfile: the default user (admin's password), then one line per role with its password's hash.

    The default user must keep every right: Redis (7.0 here; fixed upstream in redis/redis#14545)
    replays MULTI/EXEC from the AOF as the default user and silently drops each transaction that
    user may not run, which would lose every order change after a restart. It is not anonymous:
    it needs the admin password, so a client that does not authenticate gets NOAUTH.
    """
    lines = [f"user default on #{password_hash(passwords['admin'])} resetkeys resetchannels ~* &* +@all"]
    for role in ROLES:
        rules = " ".join(role_rules(role, keys))
        lines.append(f"user {role} on #{password_hash(passwords[role])} resetkeys resetchannels {rules}")
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (atomic replace)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_passwords(secrets_dir: Path) -> dict[str, str]:
    """One password per role, generated on first use and kept afterwards (so the setup is idempotent)."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    passwords = {}
    for role in ROLES:
        path = secrets_dir / f"{role}.password"
        if not path.exists() or not path.read_text().strip():
            _write_private(path, secrets.token_urlsafe(32) + "\n")
        os.chmod(path, 0o600)
        passwords[role] = path.read_text().strip()
    return passwords


def setup(var: Path, namespace: str = DEFAULT_NAMESPACE) -> Path:
    """Passwords in ``var/secrets/``, the aclfile in ``var/redis/users.acl``; returns the aclfile's path."""
    passwords = ensure_passwords(var / "secrets")
    acl = var / "redis" / "users.acl"
    acl.parent.mkdir(parents=True, exist_ok=True)
    _write_private(acl, render_acl(passwords, Keys(namespace)))
    return acl


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.acl", description=__doc__.splitlines()[0])
    parser.add_argument("--var", default="var", help="state folder (default: var)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="key namespace (default: tf)")
    args = parser.parse_args(argv)
    acl = setup(Path(args.var), args.namespace)
    print(f"Redis ACL: {acl} ({', '.join(ROLES)}); passwords in {Path(args.var) / 'secrets'}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
