"""Certificates made by the test: a CA, a broker certificate for 127.0.0.1 and a client's,
each valid for a day, as PEM files in a folder (``stack.certificates`` makes them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from stack.certificates import Key, make_ca, sign, write_certificate, write_key


@dataclass(frozen=True)
class Authority:
    """A CA: its certificate file, and what it needs to sign more."""

    cert_file: Path
    cert: x509.Certificate
    key: Key


def make_authority(folder: Path, name: str = "Homeward Test CA") -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = make_ca(name, days=1)
    return Authority(write_certificate(cert, folder / "ca.crt"), cert, key)


def issue(ca: Authority, folder: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    """A certificate signed by ``ca``: for the broker on 127.0.0.1 (``server``) or a
    client named ``name``.  Returns (certificate file, key file)."""
    cert, key = sign(ca.cert, ca.key, name, days=1,
                     server_names=["localhost", "127.0.0.1"] if server else None)
    return (write_certificate(cert, folder / f"{name}.crt"),
            write_key(key, folder / f"{name}.key"))
