"""make demo: the unchanged firmware on the simulator, driven by pumpctl as a person would."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from hil.launcher import SimProcess

SPEED = 8640  # one simulated day every 10 s
BIN = Path(sys.executable).parent
ENV = dict(os.environ)
say = Console(highlight=False)


def pumpctl(url: str, *args: str, expect: int = 0) -> None:
    """Run pumpctl as a person would; fail the demo unless it exits with `expect`."""
    shown = " ".join(["pumpctl", "--port", url, *map(shlex.quote, args)])
    say.print(f"[bold cyan]$ {shown}[/]")
    sys.stdout.flush()
    code = subprocess.run([str(BIN / "pumpctl"), "--port", url, *args], env=ENV).returncode
    if code != expect:
        raise SystemExit(f"demo: pumpctl exited with {code}, expected {expect}")
    if expect:
        say.print(f"  (exit code {code}: the pump refused, as it should)")


def step(n: int, title: str) -> None:
    say.print(f"\n[bold]{n}. {title}[/]")


def main() -> int:
    say.print(
        "[bold]intrapump demo[/]: the firmware's own files run on a simulated Pico; "
        "pumpctl talks to it over its binary protocol."
    )
    step(1, f"Start the simulator (x{SPEED} real time: one simulated day every 10 s)")
    say.print(f"[bold cyan]$ pumpsim --speed {SPEED}[/]")
    with SimProcess(str(SPEED)) as sim:
        say.print(f"  pump on {sim.url} and {sim.pty}")
        ENV["PUMPCTL_KEYS"] = sim.keyfile
        say.print(f"  its development role keys: [bold cyan]export PUMPCTL_KEYS={sim.keyfile}[/]")
        step(2, "Who is there? (a new pump: no patient profile, an empty reservoir)")
        pumpctl(sim.url, "info")
        step(3, "The patient: spinal spasticity, 40 years, titration; hard ceiling "
             "1500 mcg/day")
        pumpctl(sim.url, "profile", "set", "--origin", "spinal", "--age", "40",
                "--phase", "titration", "--ceiling", "1500", "--catheter-ml", "0.2")
        step(4, "Fill the reservoir: 20 mL of baclofen at 500 mcg/mL")
        pumpctl(sim.url, "refill", "--fill-ml", "20", "--concentration", "500",
                "--concentration-again", "500", "--drained-ml", "0")
        step(5, "Program 400 mcg/day")
        pumpctl(sim.url, "set-dose", "400")
        step(6, "The label's limits hold: a 50 % increase is refused, with the rule and "
             "the numbers")
        pumpctl(sim.url, "set-dose", "600", expect=4)
        step(7, "Watch a day of delivery (a reading every second)")
        pumpctl(sim.url, "status", "--watch", "1", "--count", "11")
        step(8, "Stop delivery: a confirmed command with a reason, never an accident")
        pumpctl(sim.url, "stop", "--reason", "end_of_therapy", "--confirm")
        step(9, "The pump's account, checked against the simulated syringe")
        pumpctl(sim.url, "status")
        with sim.client() as pump:
            counted = pump.status().delivered_ul
        rig = sim.rig()
        plant = rig.measure()
        rig.close()
        moved = Decimal(plant["delivered_nl"]) / 1000
        verdict = "[green]they agree[/]" if moved == counted else "[red]MISMATCH[/]"
        say.print(
            f"  the syringe's plunger moved {plant['steps']} steps = {moved} uL; "
            f"the pump counted {counted} uL: {verdict}"
        )
        step(10, "The event log: who did what, and what was refused by which rule")
        pumpctl(sim.url, "log")
        step(11, "Stop the simulator")
        code = sim.stop()
        say.print(f"  simulator stopped (exit code {code})")
    return 0 if code == 0 and moved == counted else 1


if __name__ == "__main__":
    sys.exit(main())
