"""Role keys on the host: a JSON file {"patient": hex, "clinician": hex, "service": hex}, the
same format the board keeps as keys.json. Never commit one.

Where pumpctl looks, first match wins: --keys FILE, $PUMPCTL_KEYS,
~/.config/intrapump/keys/<board id>.json.

Provisioning a board (see README): `python -m host.keys new FILE` makes fresh random keys,
`make flash KEYS=FILE` puts them on the board, and the file stays with whoever holds the roles
(a clinician's copy may leave out "service"; a patient's holds only "patient"). `pumpctl keys`
(host/cli/keycmd.py) does the same and more: generate, show (fingerprints), provision (keys.json
alone, by the flash procedure) and rotate."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

from host import errors
from protocol import messages as m

ROLES = m.ROLE_NAMES[1:]
CONFIG_DIR = Path.home() / ".config" / "intrapump" / "keys"


class KeyFileError(errors.PumpError):
    """A key file that is missing, unreadable or malformed."""

    exit_code = 2


def generate() -> dict[str, bytes]:
    return {role: secrets.token_bytes(m.KEY_SIZE) for role in ROLES}


def fingerprint(key: bytes) -> str:
    """A key's fingerprint, to tell keys apart without showing them: the first 8 bytes of
    its SHA-256, as hex in groups of 4 digits (e.g. 3f9a:1c2b:77de:0a41)."""
    digest = hashlib.sha256(key).hexdigest()[:16]
    return ":".join(digest[i:i + 4] for i in range(0, 16, 4))


def write(path: Path, keys: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # readable by the owner only, an existing file's mode or not
    with os.fdopen(fd, "w") as f:
        json.dump({role: key.hex() for role, key in keys.items()}, f, indent=2)
        f.write("\n")


def load(path: Path) -> dict[str, bytes]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise KeyFileError(f"{path}: no such key file") from e
    except (OSError, ValueError) as e:
        raise KeyFileError(f"{path}: not a readable key file ({e})") from e
    if not isinstance(raw, dict) or not set(raw) <= set(ROLES):
        raise KeyFileError(f"{path}: expected an object with keys among {', '.join(ROLES)}")
    keys = {}
    for role, text in raw.items():
        try:
            key = bytes.fromhex(text)
        except (TypeError, ValueError) as e:
            raise KeyFileError(f"{path}: {role} key is not hex") from e
        if len(key) != m.KEY_SIZE:
            raise KeyFileError(f"{path}: {role} key must be {m.KEY_SIZE} bytes")
        keys[role] = key
    return keys


def find(explicit: str | None, board_id: str | None) -> Path | None:
    """The key file to use, or None if there is none."""
    if explicit:
        return Path(explicit)
    if os.environ.get("PUMPCTL_KEYS"):
        return Path(os.environ["PUMPCTL_KEYS"])
    if board_id and (CONFIG_DIR / f"{board_id}.json").exists():
        return CONFIG_DIR / f"{board_id}.json"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m host.keys", description="Make role keys.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("new", help="write fresh random keys for every role to FILE")
    p.add_argument("file", type=Path)
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = ap.parse_args(argv)
    if args.file.exists() and not args.force:
        print(f"{args.file} exists; --force to replace it", file=sys.stderr)
        return 2
    write(args.file, generate())
    print(f"wrote keys for {', '.join(ROLES)} to {args.file} (mode 600)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
