"""What a refusal by Redis at connection set-up means for a human: one wording for redis-py's client and ours
(core.resp), since both meet the same refusals (bad password, missing rights, bad db, TLS)."""

from __future__ import annotations

import ssl

from redis.exceptions import AuthenticationError as RedisAuthenticationError

from core.errors import ConfigError
from core.redis_spec import RedisSpec

__all__ = ["redis_config_error"]


def redis_config_error(spec: RedisSpec, error: Exception) -> ConfigError | None:
    """The ConfigError a refusal by Redis means (bad password, missing rights, bad db), or None if transient."""
    text = str(error).removeprefix("ERR ")
    at = spec.display
    if isinstance(error, RedisAuthenticationError) or text.startswith(("WRONGPASS", "NOAUTH", "invalid password")):
        return ConfigError(f"Redis at {at} refused the credentials ({text.split('.')[0]}); check the user in "
                           "--redis-url and the password in --redis-password-file (make run writes them to "
                           "var/secrets/)")
    if text.startswith("NOPERM"):
        return ConfigError(f"Redis at {at}: the user {spec.username or 'default'!r} lacks a right it needs "
                           f"({text}); regenerate the ACL with deploy/setup-redis-acl.sh")
    if "DB index is out of range" in text or text == "Invalid Database":
        return ConfigError(f"Redis at {at} has no database {spec.db}; use a database in 0..15 "
                           "(or raise 'databases' in redis.conf)")
    if isinstance(error, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
        return ConfigError(f"TLS to Redis at {at} failed ({text}); check ssl_ca_certs / ssl_certfile / "
                           "ssl_keyfile in the URL")
    return None
