"""protocol/README.md is generated from the message table and must not go stale."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_readme_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "protocol_docs.py"), "--check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_message_is_documented() -> None:
    from protocol import messages as m

    text = (ROOT / "protocol" / "README.md").read_text()
    for mtype, name, *_ in m.MESSAGES:
        assert f"### 0x{mtype:02X} {name} " in text
