"""Commands over a link that drops, duplicates, reorders and corrupts bytes (hil/sim/lossy.py,
seeded): each takes effect exactly once or is reported failed, never twice (DESIGN:
requests are retried with the same sequence number and answered from the pump's cache;
invariant 5: nothing replayed).

A PumpClient (retrying, as shipped) drives rounds of commands on the simulator (paused clock):
continuous programs and clinician boluses with doses no other round uses, refills (begin,
commit with a fill volume no other round uses, abort after a failure), and reads (status,
program, a log page). After each command the rig runs 2 minutes. Checked, from the pump's
event log (fetched as the run goes: its ring holds 256 events) and the plant:
  - a command answered took effect exactly once; one that failed on the link (NoResponse,
    GarbledResponse, OutcomeUnknown) at most once; one refused not at all;
  - the steps the plant made in each round are the program's basal steps plus, for a bolus
    that took effect, its steps once (a bolus given twice would be 40+ steps more);
  - each status read agrees with the plant (steps delivered, reservoir) and with the
    program in force per the log.
No reboot happens in that run, so OutcomeUnknown has its own test (a hang while the answer
is written, then the watchdog). The fault counts are seeded; the traffic they act on also
depends on how many retries the client's timeouts made, so they can differ on a slow host."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import faultkit as fk
import pytest

from hil.launcher import SimProcess
from hil.rig import SimRig
from hil.suites.kit import prepare
from host import errors
from host.client import PumpClient

SPEC = "drop=0.002,dup=0.002,reorder=0.002,corrupt=0.002,seed={seed}"
ROUND_MS = 120_000
STEP_NG = 125  # 250 nL at 500 mcg/mL
LINK_FAILURES = (errors.NoResponse, errors.GarbledResponse, errors.OutcomeUnknown,
                 errors.PortLost)
# What each command logs when it takes effect.
EVENT_OF = {"set_continuous": "program", "bolus": "bolus", "refill_begin": "refill_begin",
            "refill_commit": "refill_commit", "refill_abort": "refill_abort"}


class CountingClient(PumpClient):
    """PumpClient that counts exchanges (a request, or a CHALLENGE it opens) and the frames
    it writes for them: frames - exchanges = retries."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.exchanges = 0
        self.frames = 0

    def _exchange(self, mtype: int, fields: dict[str, Any] | None, signed: bool) -> Any:
        self.exchanges += 1
        return super()._exchange(mtype, fields, signed)

    def _write(self, wire: bytes) -> None:
        self.frames += 1
        super()._write(wire)


@dataclass
class Attempt:
    round: int
    at_s: int  # the pump's clock when it was sent (the paused clock does not move meanwhile)
    kind: str
    marker: int | None  # the value its event carries, unique to it (None: none)
    outcome: str = ""  # ok, link (the link failed), refused

    @property
    def event(self) -> str:
        return EVENT_OF.get(self.kind, "")


@dataclass
class Run:
    attempts: list[Attempt] = field(default_factory=list)
    rounds: list[tuple[int, int, int]] = field(default_factory=list)  # (round, t0_s, steps)
    reads: list[tuple[int, Any, dict[str, Any]]] = field(default_factory=list)
    events: dict[int, Any] = field(default_factory=dict)  # number -> Event
    failures: dict[str, int] = field(default_factory=dict)


def fetch_events(pump: PumpClient, run: Run, tries: int = 50) -> None:
    """The events logged since the last fetch, over whatever link (reads are retried)."""
    n = max(run.events) + 1 if run.events else 0
    count = 8
    for _ in range(tries):
        try:
            page = pump.read_log(n, count)
        except LINK_FAILURES:
            count = max(1, count // 2)  # a long answer is the likelier to be damaged
            continue
        assert page.oldest <= n or not run.events, f"events {n}..{page.oldest} were dropped " \
            "from the log before they were read: fetch more often"
        for e in page.events:
            run.events[e.number] = e
        if not page.events or page.events[-1].number + 1 >= page.total:
            return
        n = page.events[-1].number + 1
    raise AssertionError(f"the log could not be read in {tries} tries")


def attempt(run: Run, a: Attempt, fn: Callable[[], Any]) -> Any:
    run.attempts.append(a)
    try:
        got = fn()
        a.outcome = "ok"
        return got
    except LINK_FAILURES as e:
        a.outcome = "link"
        name = type(e).__name__
        run.failures[name] = run.failures.get(name, 0) + 1
    except errors.ProtocolError as e:
        a.outcome = "refused"
        name = f"refused {type(e).__name__}"
        run.failures[name] = run.failures.get(name, 0) + 1
    return None


def close_refill(pump: PumpClient, run: Run, r: int, at_s: int) -> None:
    """After a failed refill step: make sure no session is left open (abort it)."""
    for _ in range(50):
        try:
            if "refill" not in pump.status().sessions:
                return
        except LINK_FAILURES:
            continue
        attempt(run, Attempt(r, at_s, "refill_abort", None), pump.refill_abort)
    raise AssertionError("a refill session could not be closed")


def clock_offset(pump: PumpClient, rig: SimRig) -> int:
    """The pump's clock minus the rig's (paused) time, in s."""
    return int(pump.status().clock.timestamp()) - rig.measure()["now_ms"] // 1000


def drive(pump: PumpClient, rig: SimRig, rounds: int, seed: int, offset_s: int) -> Run:
    rng = random.Random(seed)
    run = Run()
    dose_ng = 400_000
    bolus_n = 0
    fill_n = 0
    steps = rig.measure()["steps"]
    for r in range(rounds):
        at_s = rig.measure()["now_ms"] // 1000 + offset_s
        kind = rng.choices(("program", "bolus", "refill", "read"), (3, 3, 1, 3))[0]
        if kind == "program":
            dose_ng -= 250  # each program a dose no other round uses (and a decrease)
            attempt(run, Attempt(r, at_s, "set_continuous", dose_ng),
                    lambda d=dose_ng: pump.set_continuous(Decimal(d) / 1000))
        elif kind == "bolus":
            bolus_n += 1
            ng = (40 + bolus_n) * STEP_NG  # whole steps, each bolus its own dose
            attempt(run, Attempt(r, at_s, "bolus", ng),
                    lambda ng=ng: pump.bolus(Decimal(ng) / 1000, 60))
        elif kind == "refill":
            fill_n += 1
            fill_ul = 19_900 - fill_n  # each refill its own fill volume
            opened = attempt(run, Attempt(r, at_s, "refill_begin", None), pump.refill_begin)
            done = None
            if opened is not None:
                done = attempt(run, Attempt(r, at_s, "refill_commit", fill_ul * 1000),
                               lambda o=opened, f=fill_ul: pump.refill_commit(
                                   Decimal(f) / 1000, 500, drained_ml=o.expected_ml))
            if done is None:
                close_refill(pump, run, r, at_s)
        else:
            read = rng.choice(("status", "program", "log"))
            fn = {"status": pump.status, "program": pump.program,
                  "log": lambda: pump.read_log(0, 8)}[read]
            got = attempt(run, Attempt(r, at_s, read, None), fn)
            if read == "status" and got is not None:
                run.reads.append((r, got, rig.measure()))
        rig.advance(ROUND_MS)
        now = rig.measure()["steps"]
        run.rounds.append((r, at_s, now - steps))
        steps = now
        if r % 8 == 7:
            fetch_events(pump, run)
    fetch_events(pump, run)
    return run


def check(run: Run, start_dose_ng: int) -> dict[str, int]:
    """The run against the log and the plant; returns the tallies."""
    events = [run.events[n] for n in sorted(run.events)]
    # Every event of a command, by round (the clock does not move while a round's commands
    # are exchanged: events of round r are dated in [t0, t0 + ROUND)).
    starts = [t0 for _r, t0, _s in run.rounds]

    def round_of(e: Any) -> int:
        """The round an event was logged in (-1: before the first)."""
        t = int(e.time.timestamp())
        return max((i for i, t0 in enumerate(starts) if t0 <= t), default=-1)

    logged: dict[tuple[int, str], list[Any]] = {}
    for e in events:
        if e.event in EVENT_OF.values() and e.role == "clinician" and round_of(e) >= 0:
            logged.setdefault((round_of(e), e.event), []).append(e)
    tried: dict[tuple[int, str], list[Attempt]] = {}
    for a in run.attempts:
        if a.event:
            tried.setdefault((a.round, a.event), []).append(a)
    for key, got in logged.items():
        assert key in tried, f"round {key[0]}: {key[1]} logged {len(got)} times, never sent"
    for key, sent in tried.items():
        got = logged.get(key, [])
        ok = sum(a.outcome == "ok" for a in sent)
        failed = sum(a.outcome == "link" for a in sent)
        what = f"round {key[0]}: {key[1]} sent {len(sent)} times ({ok} answered, {failed} " \
               f"failed on the link), logged {len(got)} times"
        assert ok <= len(got) <= ok + failed, what
        for a in sent:
            if a.marker is None:
                continue
            value = {"program": lambda e: e.a, "bolus": lambda e: e.a,
                     "refill_commit": lambda e: e.a}[a.event]
            n = sum(value(e) == a.marker for e in got)
            want = {"ok": (1,), "link": (0, 1), "refused": (0,)}[a.outcome]
            assert n in want, f"{what}: the one with {a.marker} took effect {n} times " \
                f"({a.outcome})"
    # Delivery, round by round: the program's basal steps (+-1) and each bolus once.
    programs = [(int(e.time.timestamp()), e.a) for e in events if e.event == "program"]
    bolus_steps = {}
    for e in events:
        if e.event == "bolus":
            bolus_steps[round_of(e)] = bolus_steps.get(round_of(e), 0) + e.a // STEP_NG
    for r, t0, made in run.rounds:
        dose = start_dose_ng
        for t, a in programs:
            if t <= t0:
                dose = a
        basal = dose * 1000 / 500 / 250 * ROUND_MS / 86_400_000
        extra = made - bolus_steps.get(r, 0)
        assert basal - 1 <= extra <= basal + 1, f"round {r}: {made} steps, want " \
            f"{basal:.2f} basal + {bolus_steps.get(r, 0)} bolus"
    # Each status read agrees with the plant and with the log's program in force.
    for r, s, plant in run.reads:
        assert fk.pump_steps(s) == plant["steps"], f"round {r}: the pump counts " \
            f"{fk.pump_steps(s)} steps, the plant made {plant['steps']}"
        assert int(s.reservoir_ul * 1000) == plant["reservoir_nl"], f"round {r}: reservoir"
        dose = start_dose_ng
        for t, a in programs:
            if t <= run.rounds[r][1]:
                dose = a
        assert int(s.daily_dose_mcg * 1000) == dose, f"round {r}: status {s.daily_dose_mcg}"
    kinds = {}
    for a in run.attempts:
        kinds[f"{a.kind} {a.outcome}"] = kinds.get(f"{a.kind} {a.outcome}", 0) + 1
    return kinds


@pytest.fixture
def lossy_sim():
    seed = 20_270_115
    with SimProcess("0", "--lossy", SPEC.format(seed=seed)) as sim:
        rig = sim.rig()
        try:
            got = rig.call("lossy")["lossy"]
            assert got["spec"]["seed"] == seed and got["spec"]["drop"] == 0.002, got
            rig.call("lossy", spec="off")  # the set-up on a clean link
            yield sim, rig, seed
        finally:
            rig.close()


def test_commands_over_a_lossy_link_take_effect_once_or_fail(
    lossy_sim: tuple[SimProcess, SimRig, int],
) -> None:
    sim, rig, seed = lossy_sim
    pump = CountingClient(sim.url, keys=sim.keys(), timeout=0.04, retries=3)
    with pump:
        prepare(pump)
        pump.set_continuous("400")
        rig.advance(60_000)
        offset = clock_offset(pump, rig)
        rig.call("lossy", spec=SPEC.format(seed=seed))
        exchanges0, frames0 = pump.exchanges, pump.frames
        start = time.perf_counter()
        run = drive(pump, rig, 120, seed, offset)
        took = time.perf_counter() - start
        stats = rig.call("lossy")["lossy"]
        rig.call("lossy", spec="off")
        retries = (pump.frames - frames0) - (pump.exchanges - exchanges0)
        kinds = check(run, 400_000)
        # The pump's state at the end, over a clean link.
        s = pump.status()
        assert fk.pump_steps(s) == rig.measure()["steps"], "the pump's account = the plant"
        assert s.mode == "continuous" and not s.sessions, s
    sent = len(run.attempts)
    ok = sum(a.outcome == "ok" for a in run.attempts)
    link = sum(a.outcome == "link" for a in run.attempts)
    refused = sum(a.outcome == "refused" for a in run.attempts)
    faults = {k: v for k, v in stats.items() if k.endswith(("dropped", "duplicated",
                                                            "reordered", "corrupted"))}
    print(f"\nlossy link ({SPEC.format(seed=seed)}): {sent} requests in {len(run.rounds)} "
          f"rounds ({took:.1f} s): {ok} answered, {link} failed on the link, {refused} "
          f"refused; {retries} retries ({pump.frames - frames0} frames for "
          f"{pump.exchanges - exchanges0} exchanges); nothing took effect twice")
    print(f"  failures: {run.failures}")
    print(f"  by kind: {dict(sorted(kinds.items()))}")
    print(f"  bytes: {stats['in_bytes']} in, {stats['out_bytes']} out; faults: {faults}")
    assert retries > 20 and link > 0, "the link was not lossy enough to test anything"
    assert ok > sent // 2, "so lossy that little got through"
    boluses = [a for a in run.attempts if a.kind == "bolus" and a.outcome == "ok"]
    assert len(boluses) >= 10, "boluses answered: the double-dose case was exercised"


def test_a_command_whose_answer_a_reboot_lost_is_outcome_unknown_and_ran_once(
    lossy_sim: tuple[SimProcess, SimRig, int],
) -> None:
    """A bolus runs and is saved, its answer never leaves (the loop hangs writing it), the
    watchdog resets the pump, the client's retry finds its session gone: OutcomeUnknown,
    and the log holds the bolus once (cut short by the reset, not resumed)."""
    sim, rig, _seed = lossy_sim
    with PumpClient(sim.url, keys=sim.keys(), timeout=0.3, retries=3) as pump:
        prepare(pump)
        pump.set_continuous("400")
        rig.advance(60_000)
        total = pump.read_log(0, 1).total
        reply = ("Loop.answer", "Loop.reply", "link.write")
        rig.call("trace_turns", on=True)
        pump.set_telemetry(0)  # any command: its answer is written from Loop.answer
        rig.advance(0)  # returns once the firmware waits again: its turn is over
        points = rig.call("trace_turns", on=False)["points"]
        point = next(p for p in points if all(x in p for x in reply))
        rig.call("hang_at", point=point)
        outcome: list[BaseException | None] = []

        def send() -> None:
            try:
                pump.bolus("11", 600)
                outcome.append(None)
            except BaseException as e:  # noqa: BLE001 - reported below
                outcome.append(e)

        sender = threading.Thread(target=send)
        sender.start()
        deadline = time.monotonic() + 10
        while rig.call("hang_at")["fired"] is None:
            assert time.monotonic() < deadline, "the hang did not fire"
            time.sleep(0.01)
        rig.advance(10_000)  # the watchdog bites; the client retries meanwhile
        sender.join(10)
        assert outcome and isinstance(outcome[0], errors.OutcomeUnknown), outcome
        assert rig.boot()["reset_cause"] == 3
        events = pump.events(total)
    given = [e for e in events if e.event == "bolus" and e.a == 11_000]
    assert len(given) == 1, [(e.event, e.a) for e in events]
    done = [e for e in events if e.event == "bolus_done" and e.number > given[0].number]
    assert done and done[0].b > 0, "cut short by the reset, the rest not given"


def test_the_checks_catch_a_command_that_took_effect_twice(
    lossy_sim: tuple[SimProcess, SimRig, int],
) -> None:
    """The same checks on a host that resends a program afresh (a new sequence number)
    when its answer is lost, as a naive application-level retry would: the pump, rightly,
    runs it again, and check() says so."""
    sim, rig, _seed = lossy_sim
    with PumpClient(sim.url, keys=sim.keys(), timeout=0.1, retries=0) as pump:
        prepare(pump)
        pump.set_continuous("400")
        rig.advance(60_000)
        offset = clock_offset(pump, rig)
        run = Run()
        steps = rig.measure()["steps"]
        at_s = rig.measure()["now_ms"] // 1000 + offset
        rig.call("lossy", spec="drop=0.03,dir=out,seed=3")  # answers lost, requests arrive
        for dose in (399_000, 398_000, 397_000, 396_000):
            for _ in range(5):  # the naive retry: the same command as a new request
                a = Attempt(0, at_s, "set_continuous", dose)
                attempt(run, a, lambda d=dose: pump.set_continuous(Decimal(d) / 1000))
                if a.outcome == "ok":
                    break
        rig.call("lossy", spec="off")
        rig.advance(ROUND_MS)
        run.rounds.append((0, at_s, rig.measure()["steps"] - steps))
        fetch_events(pump, run)
    with pytest.raises(AssertionError, match="took effect [2-9] times") as caught:
        check(run, 400_000)
    print(f"\nnaive retry: {str(caught.value).splitlines()[0]}")
