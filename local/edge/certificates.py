"""The local edge's certificate authority and server certificate, made with `cryptography`.

The CA stays in the run directory across runs (so a developer trusts it once)
and is made again only when it is missing, unreadable or close to expiring;
the server certificate is made again when it is missing, close to expiring,
not issued by the current CA, or does not name every local name. Private keys
are written readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
# Below the 398 days browsers accept for a server certificate.
SERVER_LIFETIME = datetime.timedelta(days=397)
# A certificate with less left than this is made again at start.
RENEW_BEFORE = datetime.timedelta(days=30)
# Clocks of a client and of this machine may differ a little.
BACKDATE = datetime.timedelta(minutes=5)
CA_NAME = "hosp-reliability local edge CA"
# What the local CA may sign, whoever trusts it: localhost and names under it, loopback addresses.
NAME_CONSTRAINTS = x509.NameConstraints(
    permitted_subtrees=[
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    ],
    excluded_subtrees=None,
)
PRIVATE = 0o600


@dataclass(frozen=True)
class EdgeCertificates:
    """Where the edge's CA and server certificate are, once `ensure` has made them."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA certificate a client trusts: `curl --cacert <this>`."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def certificate(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key(self) -> Path:
        return self.directory / "server-key.pem"

    def ensure(self, dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> None:
        """A valid CA and a server certificate for these names, made only where needed.

        The names must be loopback ones (localhost and names under .localhost, loopback
        addresses): the CA may sign nothing else (NAME_CONSTRAINTS), so trusting it, as the
        README says to, cannot make a browser or curl trust it for any real domain.
        """
        outside = [n for n in dns_names if n != "localhost" and not n.endswith(".localhost")]
        outside += [a for a in ip_addresses if not ipaddress.ip_address(a).is_loopback]
        if outside:
            raise ValueError(f"the local CA signs loopback names only, not {outside}")
        self.directory.mkdir(parents=True, exist_ok=True)
        now = _now()
        ca = _read_ca(self.ca, self.ca_key, now)
        if ca is None:
            ca = _new_ca(now)
            _write_key(self.ca_key, ca[1])
            _write(self.ca, ca[0].public_bytes(serialization.Encoding.PEM))
        ca_cert, ca_key = ca
        valid = _server_is_valid(
            self.certificate, self.key, ca_cert, dns_names=dns_names, ip_addresses=ip_addresses, now=now
        )
        if not valid:
            cert, key = _new_server(ca_cert, ca_key, dns_names, ip_addresses, now)
            _write_key(self.key, key)
            _write(self.certificate, cert.public_bytes(serialization.Encoding.PEM))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _read_ca(
    cert_path: Path, key_path: Path, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    if cert.not_valid_after_utc - now < RENEW_BEFORE:
        return None
    try:  # a CA made before it was constrained is made again
        if cert.extensions.get_extension_for_class(x509.NameConstraints).value != NAME_CONSTRAINTS:
            return None
    except x509.ExtensionNotFound:
        return None
    return cert, key


def _server_is_valid(
    cert_path: Path,
    key_path: Path,
    ca: x509.Certificate,
    *,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[str, ...],
    now: datetime.datetime,
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return False
    named = set(names.get_values_for_type(x509.DNSName)) == set(dns_names) and {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    } == set(ip_addresses)
    return named and cert.not_valid_after_utc - now >= RENEW_BEFORE


def _new_ca(now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(NAME_CONSTRAINTS, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    dns_names: tuple[str, ...],
    ip_addresses: tuple[str, ...],
    now: datetime.datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_LIFETIME, ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write(path, pem, PRIVATE)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Written whole under a temporary name, then renamed: never a half file, never wider than `mode`."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(descriptor, mode)  # whatever the umask
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    partial.replace(path)
