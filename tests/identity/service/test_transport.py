"""TLS (and mutual TLS) on the wire, the refusal to serve plaintext beyond loopback, and
tokens on disk that other OS users cannot read."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qsched.api.configs.v1 import configs_pb2, configs_pb2_grpc
from qsched.wire import Tls, aio_channel
from qsched_core.config import ServiceConfig
from qsched_core.sql import sqlite_url
from qsched_ops.provision import provision
from qsched_runtime.security import ServerSecurity, check_listen
from tests.support.stack import running_service


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(path: Path, key, cert) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_pki(root: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    root.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("qsched test CA"))
        .issuer_name(_name("qsched test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(root / "ca", ca_key, ca)

    def leaf(name: str, san: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        _write(root / name, key, builder.sign(ca_key, hashes.SHA256()))

    import ipaddress

    leaf("server", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    leaf("client", [])
    return {p.stem + p.suffix: p for p in root.iterdir()}


async def list_types(address: str, token: str, tls: Tls | None) -> int:
    async with aio_channel(address, token, tls) as channel:
        stub = configs_pb2_grpc.ConfigServiceStub(channel)
        response = await stub.ListConfigTypes(configs_pb2.ListConfigTypesRequest(), timeout=5)
        return len(response.config_types)


async def test_tls_on_and_off(tmp_path, identity):
    pki = make_pki(tmp_path)
    tls = {"tls_cert_file": str(pki["server.pem"]), "tls_key_file": str(pki["server.key"])}
    async with running_service("configs", tmp_path / "tls", **tls) as address:
        assert await list_types(address, identity.token, Tls(str(pki["ca.pem"]))) >= 4
        with pytest.raises(grpc.aio.AioRpcError) as plaintext:  # a plaintext client cannot talk to it
            await list_types(address, identity.token, None)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        other = make_pki(tmp_path / "other-ca")
        with pytest.raises(grpc.aio.AioRpcError) as untrusted:  # nor one that does not trust its CA
            await list_types(address, identity.token, Tls(str(other["ca.pem"])))
        assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE
        # TLS does not replace the token.
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await list_types(address, "", Tls(str(pki["ca.pem"])))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    async with running_service("configs", tmp_path / "plain") as address:  # TLS off: loopback plaintext
        assert await list_types(address, identity.token, None) >= 4


async def test_mutual_tls_requires_a_client_certificate(tmp_path, identity):
    pki = make_pki(tmp_path)
    mtls = {
        "tls_cert_file": str(pki["server.pem"]),
        "tls_key_file": str(pki["server.key"]),
        "tls_client_ca_file": str(pki["ca.pem"]),
    }
    async with running_service("configs", tmp_path / "mtls", **mtls) as address:
        with_cert = Tls(str(pki["ca.pem"]), str(pki["client.pem"]), str(pki["client.key"]))
        assert await list_types(address, identity.token, with_cert) >= 4
        with pytest.raises(grpc.aio.AioRpcError) as without:
            await list_types(address, identity.token, Tls(str(pki["ca.pem"])))
        assert without.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_is_refused_beyond_loopback():
    plain = ServerSecurity(authenticator=None, credentials=None)  # type: ignore[arg-type]
    for listen in ("127.0.0.1:0", "localhost:50051", "[::1]:50051"):
        check_listen(listen, plain)
    for listen in ("0.0.0.0:50051", "[::]:50051", "lab-server:50051", "10.1.2.3:50051"):
        with pytest.raises(OSError, match="without TLS"):
            check_listen(listen, plain)
    check_listen("0.0.0.0:50051", ServerSecurity(None, None, allow_plaintext=True))  # type: ignore[arg-type]


def test_provisioning_keeps_tokens_private_and_is_idempotent(tmp_path):
    data, config = tmp_path / "data", tmp_path / "home" / ".config" / "qsched"
    url = sqlite_url(data / "identity.db")
    first = provision(url, data, config / "token", person="lab-admin")
    assert first.created == ["lab-admin", "svc-scheduler", "svc-executor", "svc-calibrator"]
    token = (config / "token").read_text()
    assert (config / "token").stat().st_mode & 0o777 == 0o600
    assert config.stat().st_mode & 0o777 == 0o700
    assert (data / "secrets").stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (data / "secrets").iterdir())
    again = provision(url, data, config / "token", person="lab-admin")
    assert (again.created, again.issued) == ([], []) and (config / "token").read_text() == token
    # Another OS user starting the same installation gets no account by default.
    other = provision(url, data, tmp_path / "other" / "token", person="visitor")
    assert other.person_token_file is None and "ask an admin" in other.notes[0]
    assert (
        ServiceConfig(service="scheduler", data_dir=data).token_path() == data / "secrets" / "scheduler.token"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to a second OS user needs root")
def test_a_second_os_user_cannot_read_the_first_users_token(tmp_path):
    config = tmp_path / "home" / ".config" / "qsched"
    provision(sqlite_url(tmp_path / "identity.db"), tmp_path, config / "token", person="first")
    tmp_path.chmod(0o755)  # let the other user traverse to the files, as in a shared /home
    (tmp_path / "home").chmod(0o755)
    (tmp_path / "home" / ".config").chmod(0o755)
    script = (
        "import os, sys\n"
        "from qsched.credentials import find_token\n"  # import first: the interpreter lives in /root
        "os.setgid(65534); os.setuid(65534)\n"
        f"os.environ['QSCHED_CONFIG_DIR'] = {str(config)!r}\n"
        "try:\n    find_token(); print('READ')\nexcept PermissionError as e:\n    print('DENIED', e)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("DENIED"), result.stdout + result.stderr
    assert "cannot read the qsched token file" in result.stdout
