"""Where Redis is and how to reach it: one parsed, frozen spec that every client reads.

Both the redis-py clients (:func:`core.connection.redis_client`) and the lean
RESP client (:mod:`core.resp`) are built from a :class:`RedisSpec`, so they can
never disagree about the host, the database, the credentials or TLS (they did:
the lean client once ignored ``ssl_ca_certs`` and failed against a private CA).

Accepted URLs::

    redis://[user[:password]@]host[:port][/db][?option=value...]
    rediss://...        TLS; same options
    unix:///path/to/redis.sock[?db=N]
    redis+cluster://[user[:password]@]host:port[,host:port...]/[?ssl_*=...]     (core.cluster)
    rediss+sentinel://[user[:password]@]host:port[,host:port...]/<master>[?ssl_*=...]  (core.sentinel)

On a ``rediss+cluster://`` URL the ``ssl_*`` options hold for every node the cluster client
discovers; on ``rediss+sentinel://`` for the Sentinels and the data nodes alike (one private CA,
one client certificate per host): :meth:`RedisSpec.node_kwargs` carries them to both.

Query options (anything else is a configuration error, before any I/O):

=========================  ====================================================
``ssl_ca_certs``           CA bundle (PEM) that signed the server's certificate
``ssl_certfile``           client certificate (PEM) for mutual TLS
``ssl_keyfile``            its private key (PEM)
``ssl_cert_reqs``          ``required`` (default), ``optional`` or ``none``
``ssl_check_hostname``     ``true`` (default when verifying) or ``false``
``socket_connect_timeout``  seconds to wait for the TCP/TLS handshake (default 5)
``db``                     database number (the path's ``/N`` wins if both)
=========================  ====================================================

The password may come from the URL or, better (``ps`` shows command lines),
from a file given separately; the spec's ``repr`` and :attr:`RedisSpec.display`
never show it.
"""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from core.errors import ConfigError

CertReqs = Literal["required", "optional", "none"]

_CERT_REQS: dict[str, ssl.VerifyMode] = {
    "required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_OPTIONS = (*_TLS_FILES, "ssl_cert_reqs", "ssl_check_hostname", "socket_connect_timeout", "db")
_EXAMPLE = "e.g. redis://127.0.0.1:6379/0 or rediss://host:6380/0?ssl_ca_certs=ca.pem"
#: Redis's own limit is the server's ``databases`` setting (16 by default); this only catches typos early.
MAX_DB = 16_383


@dataclass(frozen=True, kw_only=True)
class RedisSpec:
    """A parsed Redis address with credentials and TLS settings; the password stays out of ``repr``."""

    scheme: Literal["redis", "rediss", "unix"] = "redis"
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: CertReqs = "required"
    ssl_check_hostname: bool = True
    connect_timeout_s: float = 5.0
    #: ``cluster`` / ``sentinel``: the servers come from ``seed_url`` (several hosts; core.cluster,
    #: core.sentinel build the clients), and host/port are its first seed.
    topology: Literal["single", "cluster", "sentinel"] = "single"
    seed_url: str = field(default="", repr=False)

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def display(self) -> str:
        """The URL without the password, for logs and errors."""
        if self.topology != "single":
            return redact_multi_host_url(self.seed_url)
        user = f"{self.username}:***@" if self.username and self.password else (
            f"{self.username}@" if self.username else (":***@" if self.password else ""))
        if self.path:
            return f"unix://{user}{self.path}?db={self.db}"
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.db}"

    def describe(self) -> str:
        """Just the address (no user), for short messages."""
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"

    @classmethod
    def from_client(cls, client: Any) -> RedisSpec:
        """The spec a redis-py client was built from (core.connection.redis_client keeps it on the client).

        A client made elsewhere (``Redis.from_url``) is read back from its connection kwargs, TLS
        options included, through the inverse of :meth:`redis_py_kwargs`.
        """
        spec = getattr(client, "spec", None)
        if isinstance(spec, RedisSpec):
            return spec
        pool = client.connection_pool
        tls = "ssl" in pool.connection_class.__name__.lower()
        return spec_from_redis_py_kwargs(pool.connection_kwargs, tls=tls)

    def with_password(self, password: str | None) -> RedisSpec:
        return replace(self, password=password)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``rediss://`` (None otherwise), with the same meaning redis-py gives the options."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_certs)
        context.check_hostname = self.ssl_check_hostname and self.ssl_cert_reqs != "none"
        context.verify_mode = _CERT_REQS[self.ssl_cert_reqs]
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def redis_py_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.asyncio.Redis(...)`` meaning exactly this spec."""
        kwargs: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password,
                                  "socket_connect_timeout": self.connect_timeout_s}
        if self.path:
            return {**kwargs, "unix_socket_path": self.path}
        return {**kwargs, "host": self.host, "port": self.port, **self.tls_kwargs()}

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's TLS keyword arguments for this spec ({} without TLS): file paths, never key material."""
        if not self.tls:
            return {}
        return {"ssl": True, "ssl_ca_certs": self.ssl_ca_certs, "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile, "ssl_cert_reqs": self.ssl_cert_reqs,
                "ssl_check_hostname": self.ssl_check_hostname and self.ssl_cert_reqs != "none"}

    def node_kwargs(self) -> dict[str, Any]:
        """What every node of a cluster or Sentinel setup is reached with (TLS, connect timeout); the
        hosts, user and password come from core.cluster / core.sentinel."""
        return {"socket_connect_timeout": self.connect_timeout_s, **self.tls_kwargs()}


def spec_from_redis_py_kwargs(kwargs: dict[str, Any], *, tls: bool) -> RedisSpec:
    """The inverse of :meth:`RedisSpec.redis_py_kwargs` (tested as a round trip so the two cannot drift)."""
    path = kwargs.get("path") or kwargs.get("unix_socket_path") or ""
    cert_reqs = kwargs.get("ssl_cert_reqs", "required")
    if isinstance(cert_reqs, ssl.VerifyMode):
        cert_reqs = {mode: name for name, mode in _CERT_REQS.items()}[cert_reqs]
    return RedisSpec(
        scheme="unix" if path else ("rediss" if tls else "redis"), host=kwargs.get("host", "127.0.0.1"),
        port=int(kwargs.get("port", 6379)), path=path, db=int(kwargs.get("db", 0) or 0),
        username=kwargs.get("username"), password=kwargs.get("password"),
        ssl_ca_certs=kwargs.get("ssl_ca_certs"), ssl_certfile=kwargs.get("ssl_certfile"),
        ssl_keyfile=kwargs.get("ssl_keyfile"), ssl_cert_reqs=cert_reqs,
        ssl_check_hostname=bool(kwargs.get("ssl_check_hostname", True)),
        connect_timeout_s=float(kwargs.get("socket_connect_timeout") or 5.0))


def parse_redis_url(url: str, *, setting: str = "redis_url") -> RedisSpec:
    """Parse and check ``url``; every problem is a ConfigError naming the fix, and none shows the password."""
    multi_host = url.partition("://")[0].lower()
    if multi_host in _MULTI_HOST:  # several hosts: urlsplit cannot read the port
        return _multi_host_spec(url, multi_host)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"setting '{setting}': not a valid Redis URL ({_scrub(str(e), url)}); {_EXAMPLE}") from None
    scheme = parts.scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"setting '{setting}': scheme {scheme!r} is not redis://, rediss:// or unix://; {_EXAMPLE}")
    options = _query_options(parts.query, setting)
    db = _db(parts.path if scheme != "unix" else "", options.pop("db", None), setting)
    spec = RedisSpec(
        scheme=scheme,  # type: ignore[arg-type]  # checked just above
        host=parts.hostname or "127.0.0.1", port=port or 6379,
        path=unquote(parts.path) if scheme == "unix" else "", db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        **_tls_options(options, scheme, setting))
    if scheme == "unix" and not spec.path:
        raise ConfigError(f"setting '{setting}': a unix:// URL needs a socket path, e.g. unix:///run/redis.sock")
    return spec


#: URL schemes of several servers: (topology, TLS). Their seeds are checked by core.cluster / core.sentinel.
_MULTI_HOST: dict[str, tuple[Literal["cluster", "sentinel"], bool]] = {
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True)}


def split_hosts(url: str, what: str, example: str) -> tuple[str | None, str | None, tuple[tuple[str, int], ...]]:
    """(username, password, hosts) of a URL of several ``host:port`` (urlsplit cannot read them);
    ConfigError naming a host that is not ``host:port``. Shared by core.cluster and core.sentinel."""
    after_scheme = url.partition("://")[2]
    userinfo, _, hosts = after_scheme.partition("/")[0].partition("?")[0].rpartition("@")
    if not userinfo and "@" in after_scheme.partition("/")[0] + after_scheme.partition("?")[0]:
        # a password holding an unencoded '/' or '?': it would be read (and shown below) as a host
        raise ConfigError(f"setting 'redis_url': percent-encode the user and password of the {what}s' URL "
                          "('/' as %2F, '?' as %3F, '@' as %40)")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    seeds = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"setting 'redis_url': {what} {item!r} is not host:port, e.g. {example}")
        seeds.append((host, int(port)))
    return unquote(username) or None, unquote(password) or None, tuple(seeds)


#: (what a host is called, an example URL) per topology, for split_hosts' errors.
MULTI_HOST_EXAMPLES = {
    "cluster": ("cluster seed", "redis+cluster://10.0.0.1:7000,10.0.0.2:7000/"),
    "sentinel": ("sentinel", "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster")}


def _multi_host_spec(url: str, scheme: str) -> RedisSpec:
    topology, tls = _MULTI_HOST[scheme]
    username, password, seeds = split_hosts(url, *MULTI_HOST_EXAMPLES[topology])
    host, port = seeds[0] if seeds else ("127.0.0.1", 6379)  # none: core.cluster/sentinel refuse the URL
    options = _query_options(urlsplit(url).query, "redis_url")
    if "db" in options:
        raise ConfigError("setting 'redis_url': a cluster has only database 0 and a Sentinel URL names its "
                          "database in the path (/<master>/<db>); drop ?db=")
    scheme_name: Literal["redis", "rediss"] = "rediss" if tls else "redis"
    path = [part for part in urlsplit(url).path.split("/") if part]  # Sentinel: /<master>[/<db>]
    db = int(path[1]) if topology == "sentinel" and len(path) == 2 and path[1].isdigit() else 0
    return RedisSpec(scheme=scheme_name, host=host, port=port, db=db, username=username, password=password,
                     topology=topology, seed_url=url, **_tls_options(options, scheme_name, "redis_url"))


def redact_multi_host_url(url: str) -> str:
    """A URL of several hosts with its password replaced (urlsplit cannot parse several hosts)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.partition(':')[0]}:***@{hosts}"


def _query_options(query: str, setting: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _OPTIONS:
            raise ConfigError(f"setting '{setting}': unknown URL option {name!r}; "
                              f"known options: {', '.join(_OPTIONS)}")
        options[name] = value
    return options


def _db(path: str, option: str | None, setting: str) -> int:
    text = path.strip("/") or option or "0"
    if not text.isdigit() or int(text) > MAX_DB:
        raise ConfigError(f"setting '{setting}': database {text!r} is not a number in 0..{MAX_DB} "
                          "(a stock Redis has 0..15); use e.g. redis://127.0.0.1:6379/0")
    return int(text)


def _tls_options(options: dict[str, str], scheme: str, setting: str) -> dict[str, Any]:
    if any(name.startswith("ssl_") for name in options) and scheme != "rediss":
        raise ConfigError(f"setting '{setting}': ssl_* options need a rediss:// URL (TLS; "
                          "rediss+cluster:// or rediss+sentinel:// for several hosts)")
    out: dict[str, Any] = {}
    for name in _TLS_FILES:
        if name in options:
            if not Path(options[name]).is_file():
                raise ConfigError(f"setting '{setting}': {name} {options[name]!r} is not a readable file")
            out[name] = options[name]
    if "ssl_keyfile" in out and "ssl_certfile" not in out:
        raise ConfigError(f"setting '{setting}': ssl_keyfile needs ssl_certfile (the client certificate)")
    if "ssl_cert_reqs" in options:
        if options["ssl_cert_reqs"] not in _CERT_REQS:
            raise ConfigError(f"setting '{setting}': ssl_cert_reqs must be required, optional or none")
        out["ssl_cert_reqs"] = options["ssl_cert_reqs"]
    if "ssl_check_hostname" in options:
        out["ssl_check_hostname"] = _bool(options["ssl_check_hostname"], "ssl_check_hostname", setting)
    if "socket_connect_timeout" in options:
        out["connect_timeout_s"] = _seconds(options["socket_connect_timeout"], setting)
    return out


def _bool(text: str, name: str, setting: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"setting '{setting}': {name} must be true or false, not {text!r}")


def _seconds(text: str, setting: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 300:
        raise ConfigError(f"setting '{setting}': socket_connect_timeout must be seconds in (0, 300], not {text!r}")
    return value


def _scrub(message: str, url: str) -> str:
    password = urlsplit(url).password if "@" in url else None
    return message.replace(password, "***") if password else message


def read_password_file(path: str, setting: str = "redis_password_file") -> str:
    """The first line of ``path``; refused if others may read it (as ssh does with keys)."""
    try:
        mode = os.stat(path).st_mode
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"setting '{setting}': cannot read {path}: {e.strerror}; "
                          "run `make run` (deploy/setup-redis-acl.sh writes it) or point it at your file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"setting '{setting}': {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
                          f"run chmod 600 {path}")
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError(f"setting '{setting}': {path} is empty; put the password on its first line")
    return password
