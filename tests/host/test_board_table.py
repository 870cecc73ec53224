"""The board's half of the message table: protocol/layouts.py is what tools/board_table.py
writes from protocol/spec.py (byte for byte: the file cannot go stale), the board gets it and
never protocol/spec.py (`# host-only`), and the host still reads the whole table through
protocol/messages.py."""

import subprocess
import sys
from pathlib import Path

from host.deploy import board_sources
from protocol import codec, spec
from protocol import messages as m

ROOT = Path(__file__).resolve().parents[2]


def test_layouts_file_is_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "board_table.py"), "--check"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_board_gets_the_compact_table_not_the_spec() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in board_sources()}
    assert {"protocol/messages.py", "protocol/layouts.py", "protocol/codec.py"} <= names
    assert "protocol/spec.py" not in names and "protocol/host_codec.py" not in names


def test_host_reads_the_whole_table_through_messages() -> None:
    # Names messages.py does not define come from spec.py, the same objects.
    for name in ("MESSAGES", "ENUMS", "FLAGS", "RULES", "LOG_FIELDS", "find"):
        assert getattr(m, name) is getattr(spec, name), name
    assert m.find(m.STATUS)[3] is m.STATUS_FIELDS  # the firmware's own table, shared
    assert codec.LAYOUTS[m.STATUS].fields is m.STATUS_FIELDS
    try:
        m.NO_SUCH_NAME  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("an unknown name must still raise AttributeError")
