"""CurveZMQ keys: generate them (``embodied keygen out=<dir>``) and load them.

Layout written by ``generate(out)``::

    out/server.key, out/server.key_secret        the server's key pair
    out/client.key, out/client.key_secret        one robot's key pair
    out/authorized/client.key                    public keys the server accepts

The server needs ``server.key_secret`` and the ``authorized`` folder; a robot needs
``client.key_secret`` and ``server.key``. Key files are ZeroMQ's text certificates.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from embodied.core.errors import ConfigError


@dataclass
class ServerKeys:
    public: bytes
    secret: bytes
    authorized_dir: str  # folder of client public keys (*.key) allowed to connect


@dataclass
class ClientKeys:
    public: bytes
    secret: bytes
    server_public: bytes


def generate(out: str | os.PathLike, clients: tuple[str, ...] = ("client",)) -> dict[str, str]:
    """Write a server key pair, one key pair per client name, and the ``authorized`` folder."""
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CurveZMQ; install pyzmq wheels from PyPI")
    out = Path(out)
    auth = out / "authorized"
    auth.mkdir(parents=True, exist_ok=True)
    paths = {}
    pub, sec = zmq.auth.create_certificates(out, "server")
    paths.update(server=str(pub), server_secret=str(sec))
    for name in clients:
        pub, sec = zmq.auth.create_certificates(out, name)
        shutil.copy(pub, auth / Path(pub).name)
        paths[name] = str(pub)
        paths[f"{name}_secret"] = str(sec)
    os.chmod(out, 0o700)
    for p in out.glob("*.key_secret"):
        os.chmod(p, 0o600)
    paths["authorized"] = str(auth)
    return paths


def _load(path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not Path(path).is_file():
        raise ConfigError(f"key file {path} not found; create keys with `embodied keygen out=<dir>`")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except Exception as e:  # zmq raises ValueError/OSError on a bad file
        raise ConfigError(f"key file {path} is not a ZeroMQ certificate ({e})") from None
    if need_secret and not secret:
        raise ConfigError(f"{path} holds no secret key; pass the *.key_secret file")
    return public, secret


def server_keys(secret_file, authorized_dir) -> ServerKeys:
    public, secret = _load(secret_file, need_secret=True)
    if not Path(authorized_dir).is_dir():
        raise ConfigError(f"authorized-keys folder {authorized_dir} not found; it holds the clients' *.key files")
    return ServerKeys(public, secret, str(authorized_dir))


def client_keys(secret_file, server_public_file) -> ClientKeys:
    public, secret = _load(secret_file, need_secret=True)
    server_public, _ = _load(server_public_file, need_secret=False)
    return ClientKeys(public, secret, server_public)
