#!/usr/bin/env python3
"""Regenerate the sample Nix binary cache in examples/cache/.

The cache holds one store path: a small text file added the way
`nix-store --add FILE` adds it (recursive ingestion, SHA-256), stored
uncompressed. Everything is computed here without Nix:

- the NAR, Nix's archive format: strings framed by an 8-byte little-endian
  length and zero-padded to a multiple of 8;
- its SHA-256 in Nix's base-32 alphabet;
- the content-addressed store path, from the NAR hash;
- the .narinfo that points at nar/<filehash>.nar.

Usage: python3 scripts/gen-example-cache.py [CACHE_DIR]
"""

import hashlib
import pathlib
import struct
import sys

STORE_DIR = "/nix/store"
NAME = "natshttp-hello.txt"
CONTENTS = (
    b"Hello from a Nix store path served over NATS.\n"
    b"This file reached you as a NAR through nats-http serve and gateway.\n"
)

NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # no e, o, t, u


def nix32(digest: bytes) -> str:
    """Nix's base-32: 5-bit groups taken from the end of the hash."""
    out_len = (len(digest) * 8 - 1) // 5 + 1
    chars = []
    for n in range(out_len - 1, -1, -1):
        b = n * 5
        i, j = divmod(b, 8)
        c = digest[i] >> j
        if i + 1 < len(digest):
            c |= digest[i + 1] << (8 - j)
        chars.append(NIX32_ALPHABET[c & 0x1F])
    return "".join(chars)


def nar_str(data: bytes) -> bytes:
    pad = (8 - len(data) % 8) % 8
    return struct.pack("<Q", len(data)) + data + b"\0" * pad


def nar_regular_file(contents: bytes, executable: bool = False) -> bytes:
    parts = [b"nix-archive-1", b"(", b"type", b"regular"]
    if executable:
        parts += [b"executable", b""]
    parts += [b"contents", contents, b")"]
    return b"".join(nar_str(p) for p in parts)


def compress_hash(digest: bytes, size: int) -> bytes:
    out = bytearray(size)
    for i, byte in enumerate(digest):
        out[i % size] ^= byte
    return bytes(out)


def fixed_output_store_path(nar_sha256: bytes, name: str) -> str:
    # makeFixedOutputPath(Recursive, sha256) == makeStorePath("source", ...)
    fingerprint = f"source:sha256:{nar_sha256.hex()}:{STORE_DIR}:{name}"
    h = compress_hash(hashlib.sha256(fingerprint.encode()).digest(), 20)
    return f"{STORE_DIR}/{nix32(h)}-{name}"


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent
    cache = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "examples" / "cache"
    (cache / "nar").mkdir(parents=True, exist_ok=True)
    for old in list(cache.glob("*.narinfo")) + list((cache / "nar").glob("*.nar")):
        old.unlink()

    nar = nar_regular_file(CONTENTS)
    nar_hash = hashlib.sha256(nar).digest()
    store_path = fixed_output_store_path(nar_hash, NAME)
    store_hash = store_path[len(STORE_DIR) + 1:].split("-", 1)[0]
    nar_name = f"nar/{nix32(nar_hash)}.nar"  # uncompressed: FileHash == NarHash

    (cache / "nix-cache-info").write_text(
        "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")
    (cache / nar_name).write_bytes(nar)
    (cache / f"{store_hash}.narinfo").write_text(
        f"StorePath: {store_path}\n"
        f"URL: {nar_name}\n"
        "Compression: none\n"
        f"FileHash: sha256:{nix32(nar_hash)}\n"
        f"FileSize: {len(nar)}\n"
        f"NarHash: sha256:{nix32(nar_hash)}\n"
        f"NarSize: {len(nar)}\n"
        "References: \n"
        f"CA: fixed:r:sha256:{nix32(nar_hash)}\n")
    print(f"{store_path}\n  {cache / (store_hash + '.narinfo')}\n  {cache / nar_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
