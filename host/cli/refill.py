"""pumpctl refill."""

from __future__ import annotations

import argparse

from host.cli.ui import Commands, confirm_option, emit, num, out, when
from host.client import PumpClient


def cmd_refill(pump: PumpClient, args: argparse.Namespace) -> None:
    r = pump.refill(args.fill_ml, args.concentration, drained_ml=args.drained_ml,
                    concentration_again=args.concentration_again, confirm=args.confirm)

    def human() -> None:
        out.print(f"[green]refilled[/]: {num(r.reservoir_ml, 6)} mL at "
                  f"{r.concentration_mcg_ml} mcg/mL (drained {args.drained_ml} mL, the pump "
                  f"expected {num(r.expected_ml, 6)} mL)")
        if r.refill_at:
            out.print(f"  next refill due {when(r.refill_at)}, low reservoir "
                      f"{when(r.low_at)} at the program in force")

    emit(args, r.to_dict(), human)


ORDER = 30


def register(sub: Commands, common: argparse.ArgumentParser) -> None:
    """The commands of this module, on pumpctl's parser."""
    p = sub.add_parser("refill", parents=[common], help="refill the reservoir (a refill "
                       "session opened and committed)")
    p.add_argument("--fill-ml", required=True, metavar="ML", help="volume now in the "
                   "reservoir, mL")
    p.add_argument("--concentration", "-c", type=int, required=True, metavar="MCG_ML",
                   help="drug concentration, mcg/mL (50, 500, 1000, 2000; others confirmed)")
    p.add_argument("-C", "--concentration-again", type=int, metavar="MCG_ML", required=True,
                   help="the concentration entered a second time, from the label (a second"
                        " person reads it): the pump refuses a mismatch")
    p.add_argument("--drained-ml", required=True, metavar="ML",
                   help="volume drained from the reservoir, mL (0 on a first fill)")
    confirm_option(p, ("custom_concentration", "drain_mismatch"))
    p.set_defaults(func=cmd_refill)

