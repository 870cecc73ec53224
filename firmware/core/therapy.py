# The therapy engine: the patient profile, the program in force (continuous, flex day, taper),
# boluses, screening, patient boluses, refill and catheter-access-port sessions, alarms, and the
# reservoir's dates. Every change goes through the label's rules (rules.py) and into the event
# log. Pure: it drives the Pump (the mechanism) and takes time as elapsed milliseconds.
#
# Every "within 24 h" rule runs on the pump's own monotonic time (uptime seconds), never on the
# wall clock, which a host can set: moving the clock a day ahead must not open a new day of
# doses. The wall clock only dates what is reported and the flex day's local time.

from firmware.core import rules, schedule
from firmware.core.alarms import Alarms
from firmware.core.window import BUCKET_S, BUCKETS, PeakWindow
from protocol import messages as m

DAY_S = 86400
ESCALATION_WINDOW_S = 90 * DAY_S
ESCALATION_COUNT = 3  # the third maintenance increase within 90 days flags the catheter


def _sooner(wait, w):
    """The sooner of a wait (-1: none) and w ms (at least 0)."""
    if w < 0:
        w = 0
    return w if wait < 0 or w < wait else wait


def _clamp32(v):
    return -0x80000000 if v < -0x80000000 else 0x7FFFFFFF if v > 0x7FFFFFFF else v


class Therapy:
    def __init__(self, pump, log, cfg):
        """cfg: the firmware's config module (or anything with its therapy constants)."""
        self.pump = pump
        self.log = log
        self.min_rate_nl_day = cfg.MIN_RATE_NL_DAY
        self.max_bolus_nl_min = cfg.MAX_BOLUS_NL_MIN
        self.low_nl = cfg.LOW_RESERVOIR_NL
        self.refill_margin_s = cfg.REFILL_MARGIN_S
        self.refill_timeout_s = cfg.REFILL_TIMEOUT_S
        self.drain_tolerance_nl = cfg.DRAIN_TOLERANCE_NL
        self.battery_replace_mv = cfg.BATTERY_REPLACE_MV
        self.battery_end_mv = cfg.BATTERY_END_MV
        self.role = 0  # who caused what is being done (0: the pump itself)
        self.alarms = Alarms()
        # Patient profile
        self.phase = m.PHASE_UNSET
        self.origin = m.ORIGIN_UNSET
        self.age_years = 0
        self.ceiling_ng = 0
        self.catheter_nl = 0
        self.infusion_start_s = 0  # wall clock, as reported
        self.start_up = None  # infusion start in uptime s (negative: before this boot)
        self.brain_injury_s = 0  # wall clock: a traumatic brain injury's date; 0: none
        self.programmed = False  # a program was ever set on this pump
        # The program: a day of steps; mode says whether it runs
        self.mode = m.MODE_STOPPED
        self.program_mode = m.MODE_STOPPED  # what RESUME returns to
        self.steps = ()
        self.splits = ()  # each step's rate split ahead for Pump.run_split
        self.sod_base = 0  # local second of the day at uptime 0 (for the flex day)
        self.utc_offset_min = 0
        self.daily_ng = 0
        self.stop_reason = 0
        self.change_ms = -1  # ms until the next flex step or taper day; -1: none
        self.taper_start_ng = 0
        self.taper_target_ng = 0
        self.taper_days = 0
        self.taper_day = 0
        self.taper_next_up = 0  # uptime when the next taper day starts
        # The highest daily dose in force in each quarter hour of the last 24 h
        self.in_force = PeakWindow()
        self.last_increase_up = None
        self.refill_base_ng = 0  # the dose in force when the refill session opened
        self.increase_up = [None] * ESCALATION_COUNT  # maintenance increases, a ring
        self.increase_n = 0
        self.bolus_kind = m.BOLUS_NONE
        self.bolus_ng = 0
        self.bolus_cut_ng = 0  # of a bolus a reset cut short: not delivered
        # Patient bolus settings and use
        self.pb_dose_ng = 0
        self.pb_duration_s = 600
        self.pb_lockout_s = 0
        self.pb_max = 0
        self.pb_up = [None] * 24  # when each of the last patient boluses was given (uptime)
        # Screening history: (time_s, dose_ng, duration_s), and when the last one was given
        self.screens = []
        self.last_screen_up = 0
        # Sessions. Deadlines in uptime seconds: the steady state compares small ints (the
        # pump clock, near 2**31, would be a big int on MicroPython and allocate).
        self.refill_end_up = 0  # uptime when an open refill session is aborted; 0: none
        self.refill_expected_nl = 0
        self.cap_end_up = 0  # uptime when the CAP session closes; 0: none
        # The reservoir's dates at the program in force (computed on each change)
        self.low_at_s = 0
        self.refill_at_s = 0
        self.refill_due_up = -1  # refill_at_s as uptime, for the alarm; -1: none
        self.dry_at_s = 0

    # -- the log ---------------------------------------------------------------------------

    def record(self, event, a=0, b=0, c=0, rule=0, type_=0):
        self.log.log(self.pump.clock_s(), event, self.role, rule, type_, _clamp32(a),
                     _clamp32(b), _clamp32(c))

    # -- the patient -------------------------------------------------------------------------

    def set_profile(self, origin, age_years, phase, ceiling_ng, catheter_nl, infusion_start_s,
                    brain_injury_s):
        rules.check_age(age_years)
        rules.check_brain_injury(brain_injury_s, self.pump.clock_s())
        started = self.start_up is not None or self.programmed
        if phase == m.PHASE_SCREENING and started:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PHASE, phase, self.phase,
                         "infusion has started: no going back to screening")
        # What the pump will still give (the program in force, what is left of a bolus: a
        # priming or screening bolus runs before any program) must fit under the new ceiling.
        need = self._peak(self.steps, self.pump.bolus_left_ng(), self.utc_offset_min)
        if self.daily_ng > need:
            need = self.daily_ng
        if need > ceiling_ng:
            rules.refuse(m.ERR_LIMIT, m.RULE_HARD_CEILING, ceiling_ng, need,
                         "the ceiling is under what the pump delivers in 24 h")
        if infusion_start_s and started and infusion_start_s != self.infusion_start_s:
            # Infusion started on this pump: its own start holds the first-24-h rule, and a
            # start moved back would let an increase through early.
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_INFUSION_START, 0, 0,
                         "infusion started on this pump: its start stays")
        self.origin = origin
        self.age_years = age_years
        self.phase = phase
        self.ceiling_ng = ceiling_ng
        self.catheter_nl = catheter_nl
        self.brain_injury_s = brain_injury_s
        if infusion_start_s:
            self.infusion_start_s = infusion_start_s
            p = self.pump
            self.start_up = p.uptime_s - (p.clock_s() - infusion_start_s)
        self.record(m.EV_PROFILE, age_years, ceiling_ng, origin << 8 | phase)
        return self.profile()

    def profile(self):
        return (self.origin, self.age_years, self.phase, self.ceiling_ng, self.catheter_nl,
                self.infusion_start_s, self.brain_injury_s)

    def _check_first_therapy(self):
        """Before the pump's first therapy (no program ever set, no screening bolus given):
        a year since a brain injury, by the clock now (label 1; rules.check_brain_injury)."""
        if not self.programmed and not self.screens:
            rules.check_brain_injury(self.brain_injury_s, self.pump.clock_s())

    # -- programs ----------------------------------------------------------------------------

    def set_continuous(self, daily_ng, confirm):
        self._program(m.MODE_CONTINUOUS, ((0, daily_ng),), self.utc_offset_min, confirm)
        return self.program()

    def set_flex(self, confirm, utc_offset_min, steps):
        why = schedule.valid(steps)
        if why:
            rules.refuse(m.ERR_LIMIT, m.RULE_FLEX_STEPS, len(steps), m.FLEX_STEPS_MAX, why)
        self._program(m.MODE_FLEX, tuple(steps), utc_offset_min, confirm)
        return self.program()

    def set_taper(self, target_ng, days, confirm):
        start = self.daily_ng
        if not 14 <= days <= 28:
            rules.refuse(m.ERR_LIMIT, m.RULE_TAPER, days, 28, "a taper takes 14 to 28 days")
        if not self.program_mode or not 0 < target_ng < start:
            rules.refuse(m.ERR_LIMIT, m.RULE_TAPER, target_ng, start,
                         "a taper steps down from the dose in force")
        step = (start - target_ng + days - 1) // days
        # Each day's cut relative to the day before is largest at the end.
        if step * 100 > rules.LARGE_DECREASE_PCT * (target_ng + step) and not (
                confirm & m.CONFIRM_LARGE_DECREASE):
            rules.refuse(m.ERR_NOT_CONFIRMED, m.RULE_LARGE_DECREASE, target_ng, start,
                         "the taper's last days cut more than 20 %: confirm it")
        self._require_running_setup()
        if self.mode != self.program_mode:
            # From a stop or a suspension the taper restarts delivery: a resume's check.
            self._check_peak(((0, start),), self.pump.bolus_left_ng(), start,
                             self.utc_offset_min)
        self.taper_start_ng = start
        self.taper_target_ng = target_ng
        self.taper_days = days
        self.taper_day = 0
        self.taper_next_up = self.pump.uptime_s + DAY_S
        self.programmed = True
        self.mode = self.program_mode = m.MODE_TAPER
        self.steps = ((0, start),)
        self.stop_reason = 0
        self._run()
        self.record(m.EV_PROGRAM, target_ng, start, m.MODE_TAPER)
        return (start, target_ng, days, step, self.pump.clock_s() + days * DAY_S)

    def _taper_dose(self):
        step = (self.taper_start_ng - self.taper_target_ng + self.taper_days - 1) // (
            self.taper_days)
        dose = self.taper_start_ng - step * self.taper_day
        return dose if dose > self.taper_target_ng else self.taper_target_ng

    def _taper(self):
        """The taper's day by the calendar: its days go on while it is held (stopped,
        suspended) and while the pump is off (its end date was fixed when it was set), so
        every day begun by now cuts the dose once more. Makes that day's dose the one in
        force and schedules the next day; at the target the program stays as continuous
        infusion. Returns the dose (the caller runs it, or holds it)."""
        p = self.pump
        while self.taper_day < self.taper_days and (
                (self.taper_next_up - p.uptime_s) * 1000 - p._ms <= 0):
            self.taper_day += 1
            self.taper_next_up += DAY_S
        dose = self._taper_dose()
        self.steps = ((0, dose),)
        self._note_dose(dose)
        self.change_ms = -1
        if dose > self.taper_target_ng:
            self.change_ms = (self.taper_next_up - p.uptime_s) * 1000 - p._ms
        else:  # the target reached: it stays as continuous infusion
            self.program_mode = m.MODE_CONTINUOUS
            if self.mode == m.MODE_TAPER:
                self.mode = m.MODE_CONTINUOUS
        return dose

    def _require_running_setup(self):
        if self.phase == m.PHASE_UNSET:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, 0, 0,
                         "no patient profile: set one first")
        if self.phase == m.PHASE_SCREENING:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PHASE, self.phase, m.PHASE_TITRATION,
                         "screening phase: boluses only, no program (label 2.2)")
        if not self.pump.concentration:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_RESERVOIR, 0, 0,
                         "no drug in the reservoir: refill first")

    def _program(self, mode, steps, utc_offset_min, confirm):
        self._require_running_setup()
        self._check_first_therapy()
        for _start, dose in steps:
            if dose < 1:
                rules.refuse(m.ERR_OUT_OF_RANGE, 0, dose, 1, "a dose of at least 1 ng/day")
        p = self.pump
        up = p.uptime_s
        new = schedule.daily_dose(steps)
        self._check_rate(steps, p.concentration)
        # At the program's own UTC offset: a flex day's steps fall where its local time puts
        # them, not where the program in force had it.
        self._check_peak(steps, p.bolus_left_ng(), new, utc_offset_min)
        rules.check_high_dose(new, confirm)
        old = self.daily_ng
        first = not self.programmed
        if first:
            rules.check_starting_dose(new, self.screens[-1][1] if self.screens else 0)
        elif new > old:
            maintenance = self.phase == m.PHASE_MAINTENANCE
            # At a refill visit the limit is on the visit, not on each command of it.
            rules.check_increase(
                new, self.refill_base_ng if maintenance and self.refill_end_up else old,
                self.phase,
                rules.step_pct(self.origin, self.age_years, maintenance), up,
                self.start_up if self.start_up is not None else up, self.last_increase_up,
                self.refill_end_up != 0)
        elif new < old:
            rules.check_decrease(new, self.in_force.peak(), confirm)
        # Every rule passed: the change is made whole.
        if self.start_up is None:
            self.start_up = up
            self.infusion_start_s = p.clock_s()
        if not first and new > old:
            self.last_increase_up = up
            self._escalation(new, old)
        self.programmed = True
        self._note_dose(new)
        self.steps = steps
        self.utc_offset_min = utc_offset_min
        self.mode = self.program_mode = mode
        self.stop_reason = 0
        self._run()
        self.record(m.EV_PROGRAM, new, old, mode)

    def _check_rate(self, steps, concentration):
        top = 0
        for _start, dose in steps:
            if dose > top:
                top = dose
        rate = (top * 1000 + concentration - 1) // concentration
        if rate > self.pump.max_rate_nl_day:
            rules.refuse(m.ERR_LIMIT, m.RULE_PUMP_RATE, rate, self.pump.max_rate_nl_day,
                         "%d nL/day over the pump's maximum rate" % rate)

    def _escalation(self, new, old):
        """Maintenance increases that hint at a catheter problem (label 2.6): one at the
        largest step allowed, or the third within 90 days. Flagged, logged; not refused."""
        if self.phase != m.PHASE_MAINTENANCE:
            return
        now = self.pump.uptime_s
        self.increase_up[self.increase_n % ESCALATION_COUNT] = now
        self.increase_n += 1
        pct = rules.step_pct(self.origin, self.age_years, True)
        recent = 0
        for t in self.increase_up:
            if t is not None and now - t < ESCALATION_WINDOW_S:
                recent += 1
        base = self.refill_base_ng if self.refill_base_ng else old
        if new >= base * (100 + pct) // 100 or recent >= ESCALATION_COUNT:
            self.record(m.EV_ESCALATION, new, old, recent)
            self.set_alarm(m.ALARM_ESCALATION, True)

    def _note_dose(self, daily_ng):
        self.daily_ng = daily_ng
        self.in_force.roll(self.pump.uptime_s, daily_ng)
        self.in_force.note(daily_ng)

    def _check_peak(self, steps, extra_ng, new_daily, utc_offset_min):
        peak = self._peak(steps, extra_ng, utc_offset_min)
        if peak > self.ceiling_ng:
            allowed = new_daily - (peak - self.ceiling_ng)
            rules.refuse(m.ERR_LIMIT, m.RULE_HARD_CEILING, new_daily, allowed if allowed > 0 else 0,
                         "%d ng would pass in some 24 h (with what was delivered): ceiling %d"
                         % (peak, self.ceiling_ng))

    def _peak(self, steps, extra_ng, utc_offset_min):
        """The most any 24 h window reaching into the future would hold if `steps` ran from
        now on (their day in local time at utc_offset_min) with extra_ng more given at once:
        what was delivered in its past part (the quarter-hour ring, rounded outward) plus
        what the program gives in its future part (rounded up to the next quarter hour).
        Rounded up throughout: never under."""
        p = self.pump
        w = p.window
        w.roll(p.uptime_s)
        sod = schedule.local_s(p.clock_s(), utc_offset_min)
        past = w.total_ng()  # buckets at-96 .. at: the window reaching back 24 h 15 min
        top = 0
        for k in range(BUCKETS):
            future = schedule.ng_over(steps, sod, min((k + 1) * BUCKET_S, DAY_S))
            if past + future > top:
                top = past + future
            past -= w.ng[(w.at - (BUCKETS - 1) + k) % BUCKETS]
        return top + extra_ng

    def program(self):
        return (self.mode, self.daily_ng, self.pump.basal_nl_day, self.utc_offset_min,
                self.steps)

    def _run(self, dates=True):
        """Run the step of the program in force now; schedule the next change. A flex day's
        own step changes leave the dates alone (they were computed over the whole day)."""
        p = self.pump
        if self.mode == m.MODE_TAPER:
            p.run_dose(self._taper())
        else:
            if dates:  # a change, not the day's own step: work out what the steps run at
                self._split_steps()
                self.sod_base = schedule.local_s(p.clock_s() - p.uptime_s,
                                                 self.utc_offset_min)
            sod = (self.sod_base + p.uptime_s) % DAY_S
            p.run_split(self.splits[schedule.index_at(self.steps, sod)])
            self.change_ms = -1
            if len(self.steps) > 1:
                self.change_ms = schedule.s_until_change(self.steps, sod) * 1000 - p._ms
        if dates:
            self._dates()

    def _split_steps(self):
        # Apart from _run: a generator there would close over its locals, and a closure's
        # cells are allocated on every call, the day's own step changes included.
        self.splits = tuple(self.pump.split(dose) for _start, dose in self.steps)

    # -- stopping and holding ----------------------------------------------------------------

    def stop(self, reason, confirm):
        if confirm != m.STOP_CONFIRM:
            rules.refuse(m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, reason, 0,
                         "stop needs the confirmation word 0x%08X (boxed warning)"
                         % m.STOP_CONFIRM)
        self._end_bolus()
        self.pump.halt()
        self.mode = m.MODE_STOPPED
        if self.program_mode != m.MODE_TAPER:  # (a taper's days go on: _taper)
            self.change_ms = -1
        self.stop_reason = reason
        self.record(m.EV_STOP, reason)
        self._dates()
        return (reason,)

    def suspend(self, reason, confirm):
        if confirm != m.STOP_CONFIRM:
            rules.refuse(m.ERR_NOT_CONFIRMED, m.RULE_STOP_REASON, reason, 0,
                         "suspend needs the confirmation word 0x%08X" % m.STOP_CONFIRM)
        if not self.program_mode:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "no program to hold")
        p = self.pump
        self._end_bolus()
        p.halt()
        self.mode = m.MODE_MINIMUM
        self._hold()
        if self.program_mode != m.MODE_TAPER:  # (a taper's days go on: _taper)
            self.change_ms = -1
        self.stop_reason = reason
        self.record(m.EV_SUSPEND, reason)
        self._dates()
        return (reason, p.basal_nl_day)

    def _hold(self):
        """Run the minimum rate, never more than the program itself would give at the
        reservoir's concentration (a low program keeps its own rate)."""
        p = self.pump
        rate = self.min_rate_nl_day
        prog = (self.daily_ng * 1000) // p.concentration if p.concentration else 0
        if prog < rate:
            rate = prog
        if rate:
            p.run_volume(rate)
        else:
            p.halt()

    def resume(self):
        if not self.program_mode:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "no program to resume")
        if self.mode == self.program_mode:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "the program is running")
        # With what is left of a bolus given while it was held (a priming or clinician
        # bolus may run on a stopped pump), as every program change counts it.
        self._check_peak(self.steps, self.pump.bolus_left_ng(), self.daily_ng,
                         self.utc_offset_min)
        self.mode = self.program_mode
        self.stop_reason = 0
        self._run()
        self.record(m.EV_RESUME, self.mode)
        return self.program()

    # -- boluses -----------------------------------------------------------------------------

    def bolus(self, dose_ng, duration_s):
        self._require_running_setup()  # in screening, only SCREEN's doses
        self._check_first_therapy()
        return self._bolus(m.BOLUS_CLINICIAN, dose_ng, duration_s)

    def prime(self, duration_s):
        self._require_running_setup()
        self._check_first_therapy()
        if not self.catheter_nl:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PROFILE_REQUIRED, 0, 0,
                         "no catheter volume in the profile")
        conc = self.pump.concentration
        return self._bolus(m.BOLUS_PRIMING, self.catheter_nl * conc // 1000, duration_s)

    def screen(self, dose_ng, duration_s):
        if self.phase != m.PHASE_SCREENING:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PHASE, self.phase, m.PHASE_SCREENING,
                         "screening boluses only in the screening phase (label 2.2)")
        self._check_first_therapy()
        up = self.pump.uptime_s
        given = [s[1] for s in self.screens]
        rules.check_screening(dose_ng, duration_s, given, self.last_screen_up, up,
                              self.age_years)
        out = self._bolus(m.BOLUS_SCREENING, dose_ng, duration_s)
        # The ladder's dose, not the whole-step one: the next step of the ladder follows it.
        self.screens.append((self.pump.clock_s(), dose_ng, duration_s))
        self.last_screen_up = up
        return out

    def screening(self):
        given = [s[1] for s in self.screens]
        nxt = rules.screening_next(given)
        at = 0
        if self.screens and nxt:
            wait = rules.SCREENING_GAP_S - (self.pump.uptime_s - self.last_screen_up)
            at = self.pump.clock_s() + (wait if wait > 0 else 0)
        return (nxt, at, tuple(self.screens))

    def set_patient_bolus(self, dose_ng, duration_s, lockout_s, max_per_day):
        if dose_ng:
            self._require_running_setup()
            if not max_per_day:
                rules.refuse(m.ERR_OUT_OF_RANGE, 0, 0, 1, "max_per_day must be 1 or more")
            room = self.ceiling_ng - self.daily_ng
            if dose_ng * max_per_day > room:
                rules.refuse(m.ERR_LIMIT, m.RULE_BOLUS_CEILING, dose_ng,
                             room // max_per_day,
                             "the daily maximum of patient boluses would pass the ceiling")
        self.pb_dose_ng = dose_ng
        self.pb_duration_s = duration_s
        self.pb_lockout_s = lockout_s
        self.pb_max = max_per_day if dose_ng else 0
        self.record(m.EV_PATIENT_BOLUS_SET, dose_ng, lockout_s, self.pb_max)
        return self.patient_bolus_state()

    def patient_bolus_state(self):
        used, wait = self._pb_use(self.pump.uptime_s)
        return (self.pb_dose_ng, self.pb_duration_s, self.pb_lockout_s, self.pb_max, used,
                self.pump.clock_s() + wait if self.pb_dose_ng else 0)

    def _pb_use(self, now):
        """(patient boluses in the last 24 h, s until the next is allowed)."""
        used = 0
        oldest = now
        last = None
        for t in self.pb_up:
            if t is not None and now - t < DAY_S:
                used += 1
                if t < oldest:
                    oldest = t
                if last is None or t > last:
                    last = t
        wait = 0
        if last is not None and now - last < self.pb_lockout_s:
            wait = self.pb_lockout_s - (now - last)
        if used >= self.pb_max and self.pb_max:
            w = DAY_S - (now - oldest)
            if w > wait:
                wait = w
        return used, wait

    def patient_bolus(self):
        if not self.pb_dose_ng:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_PATIENT_BOLUS_OFF, 0, 0,
                         "patient boluses are off")
        if self.mode in (m.MODE_STOPPED, m.MODE_MINIMUM):
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "therapy is held: no patient bolus")
        now = self.pump.uptime_s
        used, wait = self._pb_use(now)
        if used >= self.pb_max:
            rules.refuse(m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_MAX, used + 1, self.pb_max,
                         "%d patient boluses in 24 h already" % used, wait)
        if wait:
            rules.refuse(m.ERR_TOO_SOON, m.RULE_PATIENT_BOLUS_LOCKOUT, self.pb_lockout_s,
                         self.pb_lockout_s, "inside the lockout", wait)
        out = self._bolus(m.BOLUS_PATIENT, self.pb_dose_ng, self.pb_duration_s)
        oldest = 0
        for i in range(len(self.pb_up)):
            t = self.pb_up[i]
            if t is None:
                oldest = i
                break
            if t < self.pb_up[oldest]:
                oldest = i
        self.pb_up[oldest] = now
        return out

    def _bolus(self, kind, dose_ng, duration_s):
        p = self.pump
        if not p.concentration:
            rules.refuse(m.ERR_INVALID_STATE, m.RULE_RESERVOIR, 0, 0,
                         "no drug in the reservoir: refill first")
        if p.bolus_steps:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "a bolus is running")
        if p.held:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "a refill session holds the outlet")
        pg_step = p.pg_per_step()
        steps = dose_ng * 1000 // pg_step  # whole steps, rounded down: never over the dose
        if steps == 0:
            rules.refuse(m.ERR_OUT_OF_RANGE, 0, dose_ng, 0, "less than one motor step")
        volume = steps * p.step_nl
        if volume * 60 > self.max_bolus_nl_min * duration_s:
            rules.refuse(m.ERR_LIMIT, m.RULE_PUMP_RATE, volume * DAY_S // duration_s,
                         self.max_bolus_nl_min * 1440, "faster than the pump's bolus rate")
        dose = steps * pg_step // 1000
        # Every 24 h window that holds any of the bolus holds all of it, beside what was
        # delivered in its past and what the program in force gives in its future.
        peak = self._peak(self._running_steps(), dose, self.utc_offset_min)
        if peak > self.ceiling_ng:
            room = dose - (peak - self.ceiling_ng)
            rules.refuse(m.ERR_LIMIT, m.RULE_BOLUS_CEILING, dose, room if room > 0 else 0,
                         "the bolus would pass the hard ceiling over 24 h")
        p.start_bolus(steps, duration_s * 1000)
        self.bolus_kind = kind
        self.bolus_ng = dose
        self.record(m.EV_BOLUS, dose, duration_s, volume, type_=kind)
        return (kind, dose, volume, duration_s, p.clock_s() + duration_s)

    def _running_steps(self):
        """What runs now, as a day of steps (the minimum rate as its dose)."""
        if self.mode == m.MODE_STOPPED:
            return ()
        if self.mode == m.MODE_MINIMUM:
            p = self.pump
            return ((0, (p.basal_nl_day * p.concentration + 999) // 1000),)
        return self.steps

    def _end_bolus(self):
        """Log the bolus that ended or was cut short."""
        if not self.bolus_kind:
            return
        left = self.pump.cancel_bolus() * self.pump.pg_per_step() // 1000 + self.bolus_cut_ng
        self.bolus_cut_ng = 0
        self.record(m.EV_BOLUS_DONE, self.bolus_ng - left, left, type_=self.bolus_kind)
        self.bolus_kind = m.BOLUS_NONE
        self.bolus_ng = 0

    # -- refill and catheter access port sessions --------------------------------------------

    def refill_begin(self):
        if self.phase == m.PHASE_UNSET:
            self._require_running_setup()
        if self.refill_end_up or self.cap_end_up:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "a refill or CAP session is open")
        p = self.pump
        self._end_bolus()
        p.held = True
        self.refill_end_up = p.uptime_s + self.refill_timeout_s
        self.refill_expected_nl = p.volume_nl
        self.refill_base_ng = self.daily_ng
        self.record(m.EV_REFILL_BEGIN, p.volume_nl)
        return (p.volume_nl, p.capacity_nl, p.concentration)

    def refill_commit(self, drained_nl, fill_nl, drug, conc, conc_again, confirm):
        if not self.refill_end_up:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "no refill session is open")
        if drug != m.DRUG_BACLOFEN:
            rules.refuse(m.ERR_LIMIT, m.RULE_DRUG, drug, m.DRUG_BACLOFEN,
                         "baclofen only, never compounded (label 2.3)")
        if conc != conc_again:
            rules.refuse(m.ERR_NOT_CONFIRMED, m.RULE_CONCENTRATION, conc, conc_again,
                         "the two concentration entries differ")
        rules.check_concentration(conc, confirm)
        p = self.pump
        if fill_nl > p.capacity_nl:
            rules.refuse(m.ERR_LIMIT, m.RULE_OVERFILL, fill_nl, p.capacity_nl,
                         "more than the reservoir holds (label 5.1)")
        expected = self.refill_expected_nl
        diff = drained_nl - expected if drained_nl > expected else expected - drained_nl
        if diff * 5 > expected and diff > self.drain_tolerance_nl and not (
                confirm & m.CONFIRM_DRAIN_MISMATCH):
            rules.refuse(m.ERR_NOT_CONFIRMED, m.RULE_DRAIN_MISMATCH, drained_nl, expected,
                         "drained volume more than 20 % off the expected: explain, confirm")
        if self.program_mode and fill_nl:
            self._check_rate(self.steps, conc)
        p.fill(fill_nl, conc)
        p.held = False
        self.refill_end_up = 0
        if self.mode == m.MODE_MINIMUM:
            self._hold()  # the same limit at the new concentration
        elif self.mode != m.MODE_STOPPED:
            self._run()  # the same dose at the new concentration
        self._dates()
        self.record(m.EV_REFILL_COMMIT, fill_nl, conc, drained_nl)
        return (p.volume_nl, conc, expected, self.low_at_s, self.refill_at_s)

    def refill_abort(self, timed_out=False):
        if not self.refill_end_up:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "no refill session is open")
        self.pump.held = False
        self.refill_end_up = 0
        self.record(m.EV_REFILL_ABORT, 1 if timed_out else 0)
        return ()

    def cap_begin(self, duration_s):
        if self.refill_end_up or self.cap_end_up:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "a refill or CAP session is open")
        if duration_s < 1:
            rules.refuse(m.ERR_OUT_OF_RANGE, 0, duration_s, 1, "a CAP session lasts a while")
        self.cap_end_up = self.pump.uptime_s + duration_s
        until = self.pump.clock_s() + duration_s
        self.record(m.EV_CAP_BEGIN, until)
        return (until,)

    def cap_end(self, timed_out=False):
        if not self.cap_end_up:
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "no CAP session is open")
        self.cap_end_up = 0
        self.record(m.EV_CAP_END, 1 if timed_out else 0)
        return ()

    def sessions(self):
        return (m.SESSION_REFILL if self.refill_end_up else 0) | (
            m.SESSION_CAP if self.cap_end_up else 0)

    # -- alarms ------------------------------------------------------------------------------

    def set_alarm(self, alarm, on):
        """Raise (on) or clear an alarm; a change is logged and queued as an ALARM event."""
        if self.alarms.set(alarm, on):
            self.record(m.EV_ALARM, alarm, 1 if on else 0)

    def battery(self, mv):
        """A battery reading (each minute): elective replacement, then end of service. (A
        reading of 0 is a board without the divider: no alarm.)"""
        self.pump.battery_mv = mv
        if mv:
            self.set_alarm(m.ALARM_BATTERY_REPLACE, mv < self.battery_replace_mv)
            self.set_alarm(m.ALARM_BATTERY_END, mv < self.battery_end_mv)

    def alarm_state(self):
        a = self.alarms
        p = self.pump
        left = a.silenced_until - p.uptime_s  # silenced in the pump's own time
        return (a.active, a.unacked, p.clock_s() + left if left > 0 else 0)

    def tone(self):
        """What the buzzer sounds now: 2 two-tone (critical), 1 one tone, 0 quiet."""
        return self.alarms.tone(self.pump.uptime_s)

    def alarm_ack(self, alarm):
        if not self.alarms.active & (1 << (alarm - 1)):
            rules.refuse(m.ERR_INVALID_STATE, 0, 0, 0, "that alarm is not active")
        self.alarms.ack(alarm)
        if alarm in (m.ALARM_ESCALATION, m.ALARM_WATCHDOG_RESET):
            # Events, not conditions: acknowledged means seen and handled, so the next one
            # raises the alarm (and its tone, event and log entry) afresh.
            self.set_alarm(alarm, False)
        # (a needle alarm clears once acknowledged and the needle is out: interlocks.py)
        self.record(m.EV_ALARM_ACK, alarm)
        return self.alarm_state()

    def alarm_silence(self, minutes):
        self.alarms.silence(self.pump.uptime_s + minutes * 60)
        self.record(m.EV_ALARM_SILENCE, minutes)
        return self.alarm_state()

    # -- after a reset -----------------------------------------------------------------------

    def restart(self, gap_s, older_copy):
        """Go on with the therapy a snapshot gave back (snapshot.load): the program in force
        runs again at once (never stop abruptly: label boxed warning, 5.5); a bolus the reset
        cut short is logged as such and not resumed; sessions are closed."""
        self.record(m.EV_RESTORED, gap_s, self.mode, 1 if older_copy else 0)
        self._end_bolus()
        if self.program_mode == m.MODE_TAPER and self.mode != m.MODE_TAPER:
            self._taper()  # a taper held: its days went on, the pump off or not
        if self.mode == m.MODE_MINIMUM:
            self._hold()
        elif self.mode != m.MODE_STOPPED:
            self._run()  # a taper's days went on while the pump was off (_taper)
        self._dates()

    # -- time --------------------------------------------------------------------------------

    def advance(self, elapsed_ms):
        """Let time pass: steps out, program changes, session time-outs, reservoir alarms.
        The steady state only compares and adds small ints."""
        p = self.pump
        steps = p.advance(elapsed_ms)
        role = self.role
        self.role = 0
        if p.gap_steps:
            self.record(m.EV_DELIVERY_GAP, p.gap_steps)
        if p.just_ran_dry:
            self.record(m.EV_RESERVOIR_EMPTY)
        if p.bolus_ended:
            self._end_bolus()
            self._dates()
        if p.uptime_s // BUCKET_S != self.in_force.at:
            self.in_force.roll(p.uptime_s, self.daily_ng)
        if self.change_ms >= 0:
            self.change_ms -= elapsed_ms
            if self.change_ms <= 0:
                if self.program_mode != m.MODE_TAPER:
                    self._run(False)  # a flex day's own step
                elif self.mode == m.MODE_TAPER:
                    self._run()  # the taper's next day
                else:  # the next day of a taper held: its dose, held
                    self._taper()
                    if self.mode == m.MODE_MINIMUM:
                        self._hold()  # never more than the day's own dose
                    self._dates()
        up = p.uptime_s
        if self.refill_end_up and up >= self.refill_end_up:
            self.refill_abort(True)
        if self.cap_end_up and up >= self.cap_end_up:
            self.cap_end(True)
        if p.concentration:
            self.set_alarm(m.ALARM_LOW_RESERVOIR, p.volume_nl <= self.low_nl)
            self.set_alarm(m.ALARM_RESERVOIR_EMPTY, p.volume_nl < p.step_nl)
            self.set_alarm(m.ALARM_REFILL_DUE, 0 <= self.refill_due_up <= up)
        self.role = role
        return steps

    def ms_until_event(self):
        """ms until something the therapy must do on time (a program change, a session
        closing); -1 if nothing."""
        wait = self.change_ms
        up = self.pump.uptime_s
        if self.refill_end_up:
            wait = _sooner(wait, (self.refill_end_up - up) * 1000)
        if self.cap_end_up:
            wait = _sooner(wait, (self.cap_end_up - up) * 1000)
        return wait

    def set_clock(self, clock_s):
        self.pump.set_clock(clock_s)
        if self.mode in (m.MODE_CONTINUOUS, m.MODE_FLEX):
            self._run()  # the day's steps follow the new clock
        else:
            self._dates()

    def _dates(self):
        """When the reservoir reaches the low level, when a refill is due, when it runs dry,
        at the program in force (the basal program; a bolus only brings them forward, and
        they are computed again when it ends)."""
        p = self.pump
        now = p.clock_s()
        self.low_at_s = self.refill_at_s = self.dry_at_s = 0
        self.refill_due_up = -1
        if self.mode == m.MODE_STOPPED or not p.concentration:
            return
        usable = p.volume_nl - p.volume_nl % p.step_nl
        if self.mode == m.MODE_MINIMUM:
            rate = p.basal_nl_day
            if not rate:
                return
            dry = usable * DAY_S // rate
            low = (usable - self.low_nl) * DAY_S // rate if usable > self.low_nl else 0
        else:
            sod = schedule.local_s(now, self.utc_offset_min)
            dry = schedule.s_to_deliver(self.steps, sod, usable, p.concentration)
            low = 0
            if usable > self.low_nl:
                low = schedule.s_to_deliver(self.steps, sod, usable - self.low_nl,
                                            p.concentration)
        self.dry_at_s = now + dry
        self.low_at_s = now + low
        due = low - self.refill_margin_s
        if due < 0:
            due = 0
        self.refill_at_s = now + due
        self.refill_due_up = p.uptime_s + due
