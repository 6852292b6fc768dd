"""A private CA, a server certificate for 127.0.0.1 and a client certificate, made with the openssl CLI;
and how the test clusters and Sentinels (tests/cluster.py, tests/sentinel.py) secure their nodes with them."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)


def _signed(directory: Path, name: str, extensions: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=directory)
    (directory / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=directory)


def make_certs(directory: Path) -> Certs:
    _ca(directory, "ca")
    _ca(directory, "other-ca")
    # clientAuth too: a cluster node or a replica presents its own certificate when it connects to a
    # peer (cluster bus, replication) whose tls-auth-clients asks for one
    _signed(directory, "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    _signed(directory, "client", "extendedKeyUsage=clientAuth\n")
    for key in directory.glob("*.key"):
        key.chmod(0o600)
    return Certs(directory / "ca.pem", directory / "server.pem", directory / "server.key",
                 directory / "client.pem", directory / "client.key", directory / "other-ca.pem")


def tls_server_args(certs: Certs, tls_port: int, *, client_certs: bool) -> tuple[str, ...]:
    """redis-server arguments: TLS only (the plain port closed), optionally requiring client certificates."""
    return ("--port", "0", "--tls-port", str(tls_port), "--tls-cert-file", str(certs.server_cert),
            "--tls-key-file", str(certs.server_key), "--tls-ca-cert-file", str(certs.ca),
            "--tls-auth-clients", "yes" if client_certs else "no")


@dataclass(frozen=True)
class NodeSecurity:
    """How a test cluster's or Sentinel's nodes are secured: TLS with client certificates and/or an ACL.

    ``aclfile`` and ``replication_conf`` come from ``python -m core.acl --topology ...`` (users per role,
    masteruser/masterauth for replicas); the helpers then run their own checks as ``admin``.
    """

    certs: Certs | None = None
    aclfile: Path | None = None
    replication_conf: Path | None = None
    admin_password: str | None = field(default=None, repr=False)
    #: the ``sentinel`` link user's password (core.acl), for the Sentinels' ``auth-pass``
    sentinel_password: str | None = field(default=None, repr=False)

    def server_args(self, port: int) -> tuple[str, ...]:
        """redis-server arguments for a data node listening on ``port`` (TLS-only if certs are given)."""
        args: tuple[str, ...] = ("--port", str(port))
        if self.certs is not None:
            # TLS between the servers too: cluster bus and replication (each node presents its own certificate)
            args = (*tls_server_args(self.certs, port, client_certs=True), "--tls-cluster", "yes",
                    "--tls-replication", "yes")
        if self.aclfile is not None:
            args = (*args, "--aclfile", str(self.aclfile))
        return args

    def config_lines(self) -> str:
        """Lines for a node's config file (secrets: include the 0600 file, never a command-line argument)."""
        return f"include {self.replication_conf}\n" if self.replication_conf is not None else ""

    def tls_kwargs(self) -> dict[str, Any]:
        """redis-py's TLS keyword arguments with the client certificate ({} without TLS)."""
        if self.certs is None:
            return {}
        return {"ssl": True, "ssl_ca_certs": str(self.certs.ca), "ssl_certfile": str(self.certs.client_cert),
                "ssl_keyfile": str(self.certs.client_key)}

    def client_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments for the helpers' own checks (as admin when there is an ACL)."""
        if self.admin_password is None:
            return self.tls_kwargs()
        return {**self.tls_kwargs(), "username": "admin", "password": self.admin_password}

    def sentinel_lines(self, port: int) -> str:
        """A Sentinel's own listener: TLS-only with client certificates, and TLS to the data nodes."""
        if self.certs is None:
            return f"port {port}\n"
        return (f"port 0\ntls-port {port}\ntls-cert-file {self.certs.server_cert}\n"
                f"tls-key-file {self.certs.server_key}\ntls-ca-cert-file {self.certs.ca}\n"
                "tls-auth-clients yes\ntls-replication yes\n")

    def sentinel_auth_lines(self, service: str) -> str:
        """The Sentinel's login on the data nodes (after its ``sentinel monitor`` line)."""
        if self.sentinel_password is None:
            return ""
        return f"sentinel auth-user {service} sentinel\nsentinel auth-pass {service} {self.sentinel_password}\n"

    def url_options(self) -> str:
        """The ``?ssl_*`` query of a rediss URL for these nodes ("" without TLS)."""
        if self.certs is None:
            return ""
        return (f"?ssl_ca_certs={self.certs.ca}&ssl_certfile={self.certs.client_cert}"
                f"&ssl_keyfile={self.certs.client_key}")

    def cli_args(self) -> tuple[str, ...]:
        """redis-cli arguments (the password goes in REDISCLI_AUTH: see cli_env)."""
        args: tuple[str, ...] = ()
        if self.certs is not None:
            args = ("--tls", "--cacert", str(self.certs.ca), "--cert", str(self.certs.client_cert),
                    "--key", str(self.certs.client_key))
        return (*args, "--user", "admin") if self.admin_password is not None else args

    def cli_env(self) -> dict[str, str]:
        return {"REDISCLI_AUTH": self.admin_password} if self.admin_password is not None else {}
