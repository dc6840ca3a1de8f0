"""Debian's real nginx, run from the repository's nginx/ config, in front of real servers."""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO / "nginx"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if found is None:
        pytest.skip(
            "NGINX IS NOT INSTALLED: the nginx tests did not run. "
            "`scripts/setup.sh test` installs it with apt-get when run as root."
        )
    return found


def self_signed(directory: Path) -> Path:
    """A certificate for localhost / 127.0.0.1 at certs/tls.{crt,key}; returns the .crt path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certs / "tls.crt"


def configure(prefix: Path, upstreams: list[str], https_port: int, http_port: int) -> Path:
    """The repository's nginx/ as shipped, with two deployment-specific edits: the replica
    addresses in conf.d/upstream.conf, and the listen ports (loopback, unprivileged)."""
    shutil.copytree(NGINX_DIR, prefix, dirs_exist_ok=True)
    upstream = prefix / "conf.d" / "upstream.conf"
    text = upstream.read_text()
    servers = "".join(f"    server {u} max_fails=2 fail_timeout=10s;\n" for u in upstreams)
    text, n = re.subn(r"    server voxindex:8080 [^\n]*\n", lambda _: servers, text)
    assert n == 2, "upstream.conf changed shape: update this test's edit"
    upstream.write_text(text)
    site = prefix / "conf.d" / "voxindex.conf"
    text = site.read_text()
    text = re.sub(r"listen \[::\]:\d+[^;]*;\n", "", text)
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site.write_text(text)
    return self_signed(prefix)


def nginx_command(prefix: Path, *flags: str, directives: str = "") -> list[str]:
    """Debian's nginx on the config under ``prefix``, logging to stderr, its pid file there."""
    conf = ["-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")]
    return [nginx_binary(), *flags, "-e", "stderr", *conf, "-g", f"{directives}pid {prefix}/nginx.pid;"]


def nginx_test(prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nginx_command(prefix, "-t"),
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass
class Nginx:
    prefix: Path
    proc: subprocess.Popen[bytes]
    https_port: int
    http_port: int
    ca: Path  # the self-signed certificate clients must trust

    @property
    def url(self) -> str:
        return f"https://localhost:{self.https_port}"

    @property
    def wss(self) -> str:
        return f"wss://localhost:{self.https_port}"

    def log(self) -> str:
        return (self.prefix / "nginx.out").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start_nginx(prefix: Path, upstreams: list[str]) -> Nginx:
    https_port, http_port = free_port(), free_port()
    ca = configure(prefix, upstreams, https_port, http_port)
    checked = nginx_test(prefix)
    assert checked.returncode == 0, checked.stderr
    out = (prefix / "nginx.out").open("wb")
    proc = subprocess.Popen(
        nginx_command(prefix, directives="daemon off; "),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(prefix / 'nginx.out').read_text()}") from None
            time.sleep(0.05)
    return Nginx(prefix, proc, https_port, http_port, ca)
