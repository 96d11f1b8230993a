#!/usr/bin/env python3
"""Fails if any secret of a micropay network shows up in its logs.

usage: secrets_in_logs.py DIR LOG...

Secrets are gathered from DIR: every Ed25519 seed file (*.key holding hex), the base64 body
lines of every PEM private key, and from every SQLite store under DIR each value of a column
whose name contains "seed" or names a chain word (wallet chain and owner seeds, chain keys,
checkpoint and in-flight words, the paywords a merchant journals), plus meta rows whose key
names a seed (the wallet's account seed). Each is searched in
every LOG file as lowercase hex, uppercase hex and base64 (standard and URL-safe).
"""
import base64
import pathlib
import sqlite3
import sys


# Columns that hold hash-chain words (paywords and the chain key) in the wallet and merchant
# stores.
WORD_COLUMNS = {"word", "w", "w_last", "w_end", "w_cap", "chain_key"}


def forms(raw: bytes):
    yield raw.hex()
    yield raw.hex().upper()
    yield base64.b64encode(raw).decode().rstrip("=")
    yield base64.urlsafe_b64encode(raw).decode().rstrip("=")


def key_files(root: pathlib.Path):
    for path in root.rglob("*.key"):
        text = path.read_text(errors="replace").strip()
        if "PRIVATE KEY" in text:
            for line in text.splitlines():
                if not line.startswith("-----") and len(line) >= 32:
                    yield f"{path.name} (PEM)", line
        elif text:
            yield f"{path.name} (seed)", text.lower()
            yield f"{path.name} (seed)", text.upper()


def store_values(root: pathlib.Path):
    for path in root.rglob("*.db"):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cols = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            wanted = [c for c in cols if "seed" in c or c in WORD_COLUMNS]
            for col in wanted:
                for (value,) in db.execute(f'SELECT "{col}" FROM "{table}"'):
                    if isinstance(value, (bytes, bytearray)) and len(value) >= 16:
                        yield f"{path.name}:{table}.{col}", bytes(value)
            if table == "meta" and {"key", "value"} <= set(cols):
                for k, v in db.execute("SELECT key, value FROM meta"):
                    if "seed" in str(k) and isinstance(v, (bytes, bytearray)) and len(v) >= 16:
                        yield f"{path.name}:meta.{k}", bytes(v)
        db.close()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    logs = {p: pathlib.Path(p).read_text(errors="replace") for p in sys.argv[2:]}
    secrets = list(key_files(root))
    for where, raw in store_values(root):
        secrets.extend((where, f) for f in forms(raw))
    if not secrets:
        sys.exit(f"no secrets found under {root}: nothing was checked")
    found = [(where, log) for where, s in secrets for log, text in logs.items() if s in text]
    for where, log in found:
        print(f"LEAK: a secret from {where} appears in {log}")
    kinds = len({w for w, _ in secrets})
    print(f"checked {len(secrets)} forms of secrets from {kinds} places in {len(logs)} logs "
          f"({sum(len(t) for t in logs.values())} bytes): {len(found)} leaks")
    sys.exit(1 if found else 0)


main()
