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


# ---- JWT (operator mode) for --creds: NATS JWTs v2 signed with Ed25519 NKeys

PREFIX_OPERATOR = 14 << 3
PREFIX_ACCOUNT = 0


class NKey:
    """An Ed25519 key pair as NKeys of one type (operator, account, user)."""

    def __init__(self, d: pathlib.Path, name: str, prefix: int):
        self.pem = d / f"{name}.ed25519.pem"
        _run("genpkey", "-algorithm", "ed25519", "-out", self.pem)
        seed = _run("pkey", "-in", self.pem, "-outform", "DER")[-32:]
        pub = _run("pkey", "-in", self.pem, "-pubout", "-outform", "DER")[-32:]
        self.public = _b32(_with_crc(bytes([prefix]) + pub))
        self.seed = _b32(_with_crc(bytes([PREFIX_SEED | (prefix >> 5), (prefix & 31) << 3]) + seed))
        self.d = d

    def sign(self, data: bytes) -> bytes:
        msg = self.d / "to-sign.bin"
        msg.write_bytes(data)
        return _run("pkeyutl", "-sign", "-rawin", "-inkey", self.pem, "-in", msg)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(signer: NKey, subject: str, name: str, nats: dict) -> str:
    import hashlib
    import json
    import time as _time
    claims = {"jti": "", "iat": int(_time.time()), "iss": signer.public, "name": name,
              "sub": subject, "nats": dict(nats, version=2)}
    claims["jti"] = _b32(hashlib.sha256(json.dumps(claims, separators=(",", ":")).encode()).digest())
    head = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}.{_b64url(signer.sign(f'{head}.{body}'.encode()))}"


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def operator_setup(d: pathlib.Path) -> tuple[str, NKey, NKey]:
    """An operator and one account: (nats-server config text, account key, operator key)."""
    d.mkdir(parents=True, exist_ok=True)
    op = NKey(d, "operator", PREFIX_OPERATOR)
    acct = NKey(d, "account", PREFIX_ACCOUNT)
    op_jwt = jwt(op, op.public, "test-operator", {"type": "operator"})
    acct_jwt = jwt(op, acct.public, "test-account",
                   {"type": "account",
                    "limits": dict(UNLIMITED, imports=-1, exports=-1, wildcards=True, conn=-1,
                                   leaf=-1)})
    conf = (f"operator: {op_jwt}\nresolver: MEMORY\n"
            f"resolver_preload: {{ {acct.public}: {acct_jwt} }}\n")
    return conf, acct, op


def creds_file(d: pathlib.Path, name: str, account: NKey) -> pathlib.Path:
    """A user of `account` and its credentials file, as nsc writes one."""
    user = NKey(d, name, PREFIX_USER)
    token = jwt(account, user.public, name,
                {"type": "user", "pub": {}, "sub": {}, **UNLIMITED})
    path = d / f"{name}.creds"
    path.write_text("-----BEGIN NATS USER JWT-----\n" f"{token}\n"
                    "------END NATS USER JWT------\n\n"
                    "************************* IMPORTANT *************************\n"
                    "NKEY Seed printed below can be used to sign and prove identity.\n\n"
                    "-----BEGIN USER NKEY SEED-----\n" f"{user.seed}\n"
                    "------END USER NKEY SEED------\n")
    return path
