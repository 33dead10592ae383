"""The stack's TLS certificates for Dask, made once into `<dir>/tls/`: a certificate authority
of the stack's own, a certificate for the scheduler and workers, and one for clients. A Dask
scheduler runs any code it is sent, so bound beyond loopback it takes only peers that show a
certificate of this authority (mutual TLS: Dask's `Security`, `require_encryption`)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from app.stack.credentials import write_private

DAYS = 3650


@dataclass(frozen=True)
class Certificates:
    """The files of the stack's authority (`ca.pem`) and of its two certificates."""

    dir: Path

    @property
    def ca(self) -> Path:
        return self.dir / "ca.pem"

    def cert(self, role: str) -> Path:
        return self.dir / f"{role}.pem"

    def key(self, role: str) -> Path:
        return self.dir / f"{role}-key.pem"

    def dask_env(self, role: str) -> dict[str, str]:
        """Dask's settings (its `DASK_*` variables) for a `server` (scheduler, worker) or a
        `client`: every connection encrypted, the peer's certificate checked."""
        prefix = "DASK_DISTRIBUTED__COMM__"
        env = {f"{prefix}REQUIRE_ENCRYPTION": "True", f"{prefix}TLS__CA_FILE": str(self.ca)}
        for side in ("scheduler", "worker") if role == "server" else ("client",):
            env[f"{prefix}TLS__{side.upper()}__CERT"] = str(self.cert(role))
            env[f"{prefix}TLS__{side.upper()}__KEY"] = str(self.key(role))
        return env


def ensure(dir: Path, host: str) -> Certificates:
    """The certificates in `dir`, made the first time (the authority's key is kept there too,
    mode 0600, to sign more later); `host` goes into the server's names."""
    found = Certificates(dir)
    if all(p.exists() for p in (found.ca, found.cert("server"), found.cert("client"))):
        return found
    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = _authority()
    write_private(dir / "ca-key.pem", _pem_key(ca_key))
    for role in ("server", "client"):
        key, cert = _signed(role, host, ca_key, ca_cert)
        write_private(found.key(role), _pem_key(key))
        write_private(found.cert(role), cert.public_bytes(serialization.Encoding.PEM).decode())
    write_private(found.ca, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
    return found


def _pem_key(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _name(common: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _authority():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mnist-pipeline stack CA"))
        .issuer_name(_name("mnist-pipeline stack CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _signed(role: str, host: str, ca_key, ca_cert):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for address in {"127.0.0.1", host}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"mnist-pipeline stack {role}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert
