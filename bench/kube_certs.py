"""Certificates for a loopback control plane, made on the fly with the ``openssl`` command.

One throw-away CA signs the API server's serving certificate (``127.0.0.1``, ``localhost``)
and one client certificate per identity: the subject's CN is the user name and each O a
group, which is how the API server's client-certificate authenticator reads them. The
service-account token signing key pair is separate. Keys are P-256 (fast to make).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError

__all__ = ["CertError", "ClientCert", "Pki", "make_pki"]

_DAYS = "2"
_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class CertError(BenchError):
    """openssl is missing or failed; one line."""


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path
    ca_key: Path
    serving: ClientCert
    sa_key: Path
    sa_pub: Path
    directory: Path

    def client(self, name: str, user: str, groups: tuple[str, ...] = ()) -> ClientCert:
        """A client certificate for *user* in *groups*, saved as ``<name>.crt/.key``."""
        subject = "".join(f"/O={g}" for g in groups) + f"/CN={user}"
        return _issue(self, name, subject, ["extendedKeyUsage=clientAuth"])


def _openssl(*args: str) -> None:
    try:
        out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CertError("openssl: not found on PATH (needed to make the test certificates)") from None
    if out.returncode != 0:
        raise CertError(f"openssl {args[0]} failed: {out.stderr.strip().splitlines()[-1:]}")


def _issue(pki: Pki, name: str, subject: str, ext: list[str]) -> ClientCert:
    cert, key = pki.directory / f"{name}.crt", pki.directory / f"{name}.key"
    addext = [a for e in ["basicConstraints=critical,CA:FALSE", *ext] for a in ("-addext", e)]
    _openssl(
        "req", "-x509", "-CA", str(pki.ca), "-CAkey", str(pki.ca_key), *_KEY,
        "-keyout", str(key), "-out", str(cert), "-days", _DAYS, "-subj", subject, *addext,
    )  # fmt: skip
    return ClientCert(cert, key)


def make_pki(directory: Path) -> Pki:
    """A CA, the API server's serving certificate and the service-account key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = directory / "ca.crt", directory / "ca.key"
    _openssl(
        "req", "-x509", *_KEY, "-keyout", str(ca_key), "-out", str(ca), "-days", _DAYS,
        "-subj", "/CN=topolet-loopback-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", str(sa_key))
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    pki = Pki(ca, ca_key, ClientCert(ca, ca_key), sa_key, sa_pub, directory)
    serving = _issue(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        ["subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth"],
    )
    return Pki(ca, ca_key, serving, sa_key, sa_pub, directory)
