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

On a Redis Cluster or a Sentinel setup (``--topology cluster|sentinel``) the same roles get the
names of that layout (hash tags on a cluster) plus what the topology needs, and the nodes get
users for Redis's own links: ``replica`` (every replica's ``masteruser``) and, under Sentinel,
``sentinel`` (the Sentinels' ``auth-user``). The files go to ``var/redis/<topology>/``: one
``users.acl`` for every node and ``replication.conf`` (masteruser/masterauth, mode 0600) for
every node's config to ``include``.

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
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

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
                *_read(k.wanted_symbols(), k.latest_quote("*"), k.agent("*"), k.gateway("*")),  # heartbeats: demand
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


Topology = Literal["single", "cluster", "sentinel"]
TOPOLOGIES: tuple[Topology, ...] = ("single", "cluster", "sentinel")
#: Users for Redis's own connections, per topology (not for our processes).
LINK_ROLES: dict[Topology, tuple[str, ...]] = {"single": (), "cluster": ("replica",),
                                               "sentinel": ("replica", "sentinel")}
#: What redis-py's cluster client runs to find the nodes and route commands (COMMAND: its key table;
#: ASKING: a slot being migrated), on top of each role's rights.
_CLUSTER_BASE = ("+cluster|slots", "+cluster|shards", "+cluster|nodes", "+cluster|info", "+command", "+asking",
                 "+readonly", "+readwrite")
#: Where a role may publish or subscribe classically, a cluster uses sharded pub/sub (core.cluster).
_SHARDED = {"+publish": "+spublish", "+subscribe": "+ssubscribe", "+unsubscribe": "+sunsubscribe"}


def _for_cluster(rule: str) -> str:
    """A rule with sharded pub/sub next to classic, and ``{*}`` patterns widened to ``*``.

    Widened because a tagged pattern is narrower than the single node's: ``~tf:cache:{*}`` misses
    ``tf:cache:changed:{AAPL}``, which the cache's EVAL names as a key (for its slot). ``*`` gives each
    role what the same pattern gives it on one node; ``{orders}`` names stay exact.
    """
    selector = rule.startswith("(")
    words = [word.replace("{*}", "*") for word in rule.strip("()").split()]
    text = " ".join([*words, *(_SHARDED[w] for w in words if w in _SHARDED)])
    return f"({text})" if selector else text


def cluster_rules(role: str, keys: Keys) -> tuple[str, ...]:
    """``role_rules`` on a Redis Cluster (``keys`` with hash tags): see _for_cluster, plus the cluster
    commands of redis-py's client."""
    return (*(_for_cluster(rule) for rule in role_rules(role, keys)), *_CLUSTER_BASE)


def link_rules(role: str) -> tuple[str, ...]:
    """Rules of the users Redis's own links log in as (the rights Redis's docs list, channels narrowed)."""
    if role == "replica":  # a replica's PSYNC to its master
        return ("-@all", "+psync", "+replconf", "+ping")
    if role == "sentinel":  # monitoring, hello messages and failover commands
        return ("-@all", "&__sentinel__:hello", "+multi", "+exec", "+slaveof", "+ping", "+subscribe", "+publish",
                "+config|rewrite", "+role", "+info", "+client|setname", "+client|kill", "+script|kill")
    raise ValueError(f"unknown link role {role!r}; link roles: replica, sentinel")


def topology_keys(topology: Topology, namespace: str = DEFAULT_NAMESPACE) -> Keys:
    return Keys(namespace, cluster=topology == "cluster")


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl(passwords: Mapping[str, str], keys: Keys, topology: Topology = "single") -> str:
    """The aclfile: the default user (admin's password), then one line per role with its password's hash.

    The default user must keep every right: Redis (7.0 here; fixed upstream in redis/redis#14545)
    replays MULTI/EXEC from the AOF as the default user and silently drops each transaction that
    user may not run, which would lose every order change after a restart. It is not anonymous:
    it needs the admin password, so a client that does not authenticate gets NOAUTH.
    """
    lines = [f"user default on #{password_hash(passwords['admin'])} resetkeys resetchannels ~* &* +@all"]
    rules_of: Callable[[str, Keys], tuple[str, ...]] = cluster_rules if topology == "cluster" else role_rules
    for role in ROLES:
        rules = " ".join(rules_of(role, keys))
        lines.append(f"user {role} on #{password_hash(passwords[role])} resetkeys resetchannels {rules}")
    for role in LINK_ROLES[topology]:
        rules = " ".join(link_rules(role))
        lines.append(f"user {role} on #{password_hash(passwords[role])} resetkeys resetchannels {rules}")
    return "\n".join(lines) + "\n"


def render_example(topology: Topology, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The aclfile with each hash replaced by where it comes from: a sample to read (Redis refuses to load it)."""
    roles = (*ROLES, *LINK_ROLES[topology])
    placeholders = {role: f"example-{role}" for role in roles}
    text = render_acl(placeholders, topology_keys(topology, namespace), topology)
    for role, placeholder in placeholders.items():
        text = text.replace(password_hash(placeholder), f"<sha256 of var/secrets/{role}.password>")
    return text


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (atomic replace)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_passwords(secrets_dir: Path, roles: Sequence[str] = ROLES) -> dict[str, str]:
    """One password per role, generated on first use and kept afterwards (so the setup is idempotent)."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    passwords = {}
    for role in roles:
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


def setup_topology(var: Path, topology: Topology, namespace: str = DEFAULT_NAMESPACE) -> Path:
    """For a cluster or Sentinel setup: ``var/redis/<topology>/users.acl`` (every node loads it) and
    ``replication.conf`` (every node includes it: replicas log in to their master as ``replica``);
    the passwords in ``var/secrets/`` are the single node's, plus the link users'. Returns the aclfile."""
    if topology == "single":
        return setup(var, namespace)
    passwords = ensure_passwords(var / "secrets", (*ROLES, *LINK_ROLES[topology]))
    folder = var / "redis" / topology
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(folder / "users.acl", render_acl(passwords, topology_keys(topology, namespace), topology))
    _write_private(folder / "replication.conf", f"masteruser replica\nmasterauth {passwords['replica']}\n")
    return folder / "users.acl"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.acl", description=__doc__.splitlines()[0])
    parser.add_argument("--var", default="var", help="state folder (default: var)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="key namespace (default: tf)")
    parser.add_argument("--topology", choices=TOPOLOGIES, default="single",
                        help="single (default), cluster or sentinel: key names and the nodes' link users")
    parser.add_argument("--example", action="store_true",
                        help="print the aclfile with placeholders instead of hashes (deploy/cluster/*.example)")
    args = parser.parse_args(argv)
    if args.example:
        sys.stdout.write(render_example(args.topology, args.namespace))
        return 0
    acl = setup_topology(Path(args.var), args.topology, args.namespace)
    roles = (*ROLES, *LINK_ROLES[args.topology])
    print(f"Redis ACL: {acl} ({', '.join(roles)}); passwords in {Path(args.var) / 'secrets'}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
