"""A self-signed TLS certificate for the service; agents pin its SHA-256 fingerprint."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.core.files import write_private

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def ensure_certificate(keys_dir: Path, hostnames: list[str] | None = None) -> Path:
    """Create a self-signed certificate under keys/ when there is none; return its path."""
    cert_path = keys_dir / CERT_FILE
    if cert_path.exists():
        return cert_path
    extra = list(hostnames or [])
    names = sorted({"localhost", socket.gethostname(), *(n for n in extra if not _is_ip(n))})
    addresses = sorted({"127.0.0.1", *(n for n in extra if _is_ip(n))})
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "UBND xã Nhân Lý"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Canh Gác"),
    ])
    now = datetime.now(UTC)
    alt = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    write_private(
        keys_dir / KEY_FILE,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def certificate_fingerprint(cert_path: Path) -> str:
    """Return the SHA-256 fingerprint (hex) of a PEM certificate's DER form, as agents pin it."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
