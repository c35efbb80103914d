"""Nix as a real client in the e2e tests (shared by test_nix_*.py; no tests here).

Every nix command runs with private state (see /work/shared/cases/nix-client.md):
NIX_CONF_DIR, XDG_CACHE_HOME, XDG_CONFIG_HOME and HOME point into a temp dir,
whose nix.conf turns off the sandbox, build users and every substituter, and
sets narinfo-cache-negative-ttl = 0 so that a 404 is asked again. Stores are
chroot stores given by absolute path; nothing touches /nix or a daemon.

The test closure is made offline, without building anything: three
input-addressed store paths, imported with `nix-store --import` from an
export stream written here (the NAR of each file, then its path and
references):

    top.txt  -> references big.bin and small.txt
    big.bin  (30 MiB of pseudo-random bytes: a NAR of ~30 chunks)
    small.txt

Input-addressed paths carry no content address, so a store accepts them from
a binary cache only with a valid signature: signing and trusted-public-keys
really matter in these tests (content-addressed paths from `nix-store --add`
would be accepted without any).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import struct
import subprocess
import time

import harness

NIX = shutil.which("nix")
NIX_STORE = shutil.which("nix-store")
BIG_SIZE = 30 * 1024 * 1024
NIX_TIMEOUT = 300       # one nix command, generously: xz of 30 MiB takes ~20 s here
KEY_NAME = "natshttp-test-cache-1"


def _gen():
    spec = importlib.util.spec_from_file_location(
        "gen_example_cache", harness.REPO_ROOT / "scripts" / "gen-example-cache.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


GEN = _gen()


def available() -> bool:
    return NIX is not None and NIX_STORE is not None


def require() -> None:
    """nix is part of the test set-up (scripts/setup.sh installs nix-bin):
    its absence fails the test instead of skipping it."""
    if not available():
        raise AssertionError("nix is not installed (Debian package nix-bin): run scripts/setup.sh")


class NixResult:
    def __init__(self, args, rc: int, out: str, err: str, secs: float):
        self.args, self.rc, self.out, self.err, self.secs = args, rc, out, err, secs

    def __repr__(self) -> str:
        return (f"$ {' '.join(self.args)}\nexit {self.rc} after {self.secs:.1f}s\n"
                f"--- stdout:\n{self.out[-3000:]}\n--- stderr:\n{self.err[-3000:]}")


class Nix:
    """nix with its own configuration and caches, in a fresh temp dir."""

    def __init__(self, name: str = "nix", extra_conf: str = ""):
        require()
        self.dir = harness.tmpdir(name)
        for d in ("conf", "cache", "config", "home"):
            (self.dir / d).mkdir()
        (self.dir / "conf" / "nix.conf").write_text(
            "sandbox = false\n"
            "experimental-features = nix-command\n"
            "substituters =\n"
            "build-users-group =\n"
            "narinfo-cache-negative-ttl = 0\n"
            "narinfo-cache-positive-ttl = 0\n"
            + extra_conf)
        self.env = dict(os.environ,
                        NIX_CONF_DIR=str(self.dir / "conf"),
                        XDG_CACHE_HOME=str(self.dir / "cache"),
                        XDG_CONFIG_HOME=str(self.dir / "config"),
                        HOME=str(self.dir / "home"))
        self.env.pop("NIX_REMOTE", None)
        self.log: list[NixResult] = []

    def run(self, *args, input: bytes | None = None, timeout: float = NIX_TIMEOUT) -> NixResult:
        args = [str(a) for a in args]
        t0 = time.monotonic()
        r = subprocess.run(args, env=self.env, input=input, capture_output=True, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        res = NixResult(args, r.returncode, r.stdout.decode("utf-8", "replace"),
                        r.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        self.log.append(res)
        return res

    def ok(self, *args, **kw) -> NixResult:
        r = self.run(*args, **kw)
        if r.rc != 0:
            raise AssertionError(f"nix command failed:\n{r!r}")
        return r

    def store(self, name: str = "store") -> pathlib.Path:
        """A fresh, empty chroot store location."""
        return harness.tmpdir(name) / "s"

    def registered(self, store: pathlib.Path, path: str) -> bool:
        """Whether `path` is valid in `store` (nix path-info exits 0)."""
        return self.run(NIX, "path-info", "--store", store, path).rc == 0

    def generate_key(self, where: pathlib.Path) -> tuple[pathlib.Path, str]:
        """`nix-store --generate-binary-cache-key`: (secret key file, public key)."""
        sec, pub = where / "cache-key.sec", where / "cache-key.pub"
        self.ok(NIX_STORE, "--generate-binary-cache-key", KEY_NAME, sec, pub)
        return sec, pub.read_text().strip()


# --------------------------------------------------------------------------
# The test closure

def _fake_store_path(name: str) -> str:
    digest = hashlib.sha256(b"natshttp-e2e:" + name.encode()).digest()[:20]
    return f"/nix/store/{GEN.nix32(digest)}-{name}"


class Closure:
    """The three paths, with the bytes of each file."""

    def __init__(self, big: bytes):
        self.big = _fake_store_path("big.bin")
        self.small = _fake_store_path("small.txt")
        self.top = _fake_store_path("top.txt")
        self.contents = {
            self.big: big,
            self.small: b"a small file of the natshttp test closure\n",
        }
        self.contents[self.top] = f"uses {self.big} and {self.small}\n".encode()
        self.refs = {self.big: [], self.small: [], self.top: sorted([self.big, self.small])}
        self.paths = [self.big, self.small, self.top]     # references first
        self.nars = {p: GEN.nar_regular_file(c) for p, c in self.contents.items()}

    def nar_hash(self, path: str) -> str:
        """NarHash as nix prints it in JSON: sha256-<base64>."""
        import base64
        return "sha256-" + base64.b64encode(hashlib.sha256(self.nars[path]).digest()).decode()

    def export(self, paths=None) -> bytes:
        """The `nix-store --export` stream of `paths` (default: all, references first)."""
        out = bytearray()
        for p in paths or self.paths:
            out += struct.pack("<Q", 1)
            out += self.nars[p]
            out += struct.pack("<Q", 0x4558494E)            # "NIXE"
            out += GEN.nar_str(p.encode())
            out += struct.pack("<Q", len(self.refs[p]))
            for r in self.refs[p]:
                out += GEN.nar_str(r.encode())
            out += GEN.nar_str(b"")                          # no deriver
            out += struct.pack("<Q", 0)                      # no legacy signature
        out += struct.pack("<Q", 0)
        return bytes(out)


def make_closure(nix: Nix, store: pathlib.Path) -> Closure:
    """Imports the test closure into `store`; checks nix sees 3 paths."""
    big = random_bytes(BIG_SIZE, seed=8)
    c = Closure(big)
    nix.ok(NIX_STORE, "--store", store, "--import", input=c.export())
    r = nix.ok(NIX, "path-info", "--store", store, "-r", c.top)
    got = sorted(r.out.split())
    if got != sorted(c.paths):
        raise AssertionError(f"closure of {c.top} is {got}")
    return c


def random_bytes(n: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(n)


def file_in_store(store: pathlib.Path, path: str) -> pathlib.Path:
    """Where a chroot store keeps the file of store path `path`."""
    return store / path.lstrip("/")


def path_info(nix: Nix, store_url: str, path: str, *flags) -> list[dict]:
    r = nix.ok(NIX, "path-info", "--store", store_url, "--json", *flags, path)
    return json.loads(r.out)


def cache_files(cache: pathlib.Path) -> list[str]:
    """Every file below cache, relative, sorted."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def tmp_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Temporary files of uploads under way below root (serve --writable)."""
    return sorted(p for p in root.rglob(".natshttp-put-*") if p.is_file())
