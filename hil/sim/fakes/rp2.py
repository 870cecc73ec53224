"""The rp2 module: the BOOTSEL button (the way back to the REPL at boot)."""

from __future__ import annotations

from hil.sim import fakes_state as _s


def bootsel_button() -> int:
    return 1 if _s.sim().bootsel_held else 0
