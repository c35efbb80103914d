"""Shared helpers of the test_ops_* modules (no tests here): a test CA and
certificates made with openssl, NKey seeds derived from openssl's Ed25519
keys, and a small file tree to serve."""

import base64
import binascii
import pathlib
import subprocess

import harness

OPENSSL = "openssl"


def _run(*args, cwd=None):
    r = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, cwd=cwd, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}: "
                             f"{r.stderr.decode(errors='replace')}")
    return r.stdout


class Pki:
    """A CA and certificates signed by it, in `d`: ca.pem, <name>.pem, <name>.key."""

    def __init__(self, d: pathlib.Path, ca_name: str = "natshttp test CA"):
        self.d = d
        d.mkdir(parents=True, exist_ok=True)
        self.ca = d / "ca.pem"
        self.ca_key = d / "ca.key"
        _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
             "-subj", f"/CN={ca_name}")

    def issue(self, name: str, usage: str) -> tuple[pathlib.Path, pathlib.Path]:
        """A certificate for 127.0.0.1/localhost; usage "serverAuth" or "clientAuth"."""
        key, csr, pem = self.d / f"{name}.key", self.d / f"{name}.csr", self.d / f"{name}.pem"
        ext = self.d / f"{name}.ext"
        ext.write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                       f"extendedKeyUsage={usage}\nkeyUsage=digitalSignature\n")
        _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        _run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
             "-CAcreateserial", "-out", pem, "-days", "2", "-extfile", ext)
        return pem, key


# ---- NKeys: base32 of prefix, 32 key bytes and CRC-16/XMODEM (little-endian)

PREFIX_SEED = 18 << 3
PREFIX_USER = 20 << 3


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _with_crc(raw: bytes) -> bytes:
    return raw + binascii.crc_hqx(raw, 0).to_bytes(2, "little")


def nkey_user(d: pathlib.Path, name: str) -> tuple[str, str]:
    """A new NKey user from an openssl Ed25519 key: (seed "SU...", public key "U...")."""
    key = d / f"{name}.ed25519.pem"
    _run("genpkey", "-algorithm", "ed25519", "-out", key)
    seed = _run("pkey", "-in", key, "-outform", "DER")[-32:]          # PKCS#8: key last
    pub = _run("pkey", "-in", key, "-pubout", "-outform", "DER")[-32:]  # SPKI: key last
    b0 = PREFIX_SEED | (PREFIX_USER >> 5)
    b1 = (PREFIX_USER & 31) << 3
    return (_b32(_with_crc(bytes([b0, b1]) + seed)),
            _b32(_with_crc(bytes([PREFIX_USER]) + pub)))


def tree(d: pathlib.Path) -> dict[str, bytes]:
    """A few files to serve; {url path: bytes}."""
    files = {"/hello.txt": b"hello over NATS\n",
             "/dir/data.bin": bytes(range(256)) * 1000}
    for path, data in files.items():
        p = d / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


def error_lines(stderr: str) -> list[str]:
    """The error-level log lines (and usage lines) of a failed start."""
    return [ln for ln in stderr.splitlines() if " error " in ln or ln.startswith("nats-http ")]


def serve_args(nats_url: str, subject: str, root) -> list[str]:
    return ["--subject", subject, "--dir", str(root), "--server", nats_url]


def run_serve(*args, timeout: float = 30):
    """Run `nats-http serve ARGS` expecting it to fail: (rc, stderr)."""
    rc, _, err = harness.nats_http("serve", *args, timeout=timeout)
    return rc, err
