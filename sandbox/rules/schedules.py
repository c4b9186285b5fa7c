"""Scheduled EventBridge rules run on the sandbox's modeled clock, as AWS runs them.

AWS (EventBridge user guide "Creating a scheduled rule (legacy)", "Cron expressions reference", "Rate
expressions reference", "Amazon EventBridge events from AWS services: Scheduled Event"; API reference PutRule,
DisableRule):

* a rule with a ``ScheduleExpression`` self-triggers: at each due time EventBridge sends its targets one
  event, source ``aws.events``, detail-type ``Scheduled Event``, ``resources`` the rule's ARN, ``detail``
  ``{}``, ``time`` the due time (UTC, whole seconds), a fresh ``id``; the targets' ``Input``, ``InputPath``
  and ``InputTransformer`` apply as to any event (``eventbridge.target_input``). Nothing is put on the bus:
  no other rule sees it;
* ``rate(value unit)``: "A rate expression starts when you create the scheduled event rule": due at creation
  + value, + 2 * value... ``unit`` is ``minute``, ``hour`` or ``day`` for a value of 1 and ``minutes``,
  ``hours`` or ``days`` above (``rate(1 hours)``, ``rate(5 hour)`` are invalid);
* ``cron(Minutes Hours Day-of-month Month Day-of-week Year)`` in UTC: ``, - * /`` in every field,
  ``JAN-DEC`` and ``SUN-SAT`` (day-of-week 1-7, 1 is Sunday), ``?`` in exactly one of day-of-month and
  day-of-week, ``L`` (last day of the month; in day-of-week ``L`` is Saturday and ``6L`` the month's last
  Friday), ``W`` (``15W``: the weekday nearest the 15th, within the month; ``LW``: the last weekday),
  ``#`` (``3#2``: the second Tuesday); years 1970-2199;
* an invalid expression is refused by ``PutRule`` with ``ValidationException`` "Parameter ScheduleExpression
  is not valid."; a disabled rule does not self-trigger (its schedule goes on: re-enabled, it runs at the next
  due time, never catching up the ones it missed).

**Choices.** AWS runs a schedule "within that minute, but not on the precise 0th second", a few seconds late;
the sandbox fires at the due time exactly, so tests are deterministic. Re-putting a rule with the expression it
already has keeps its schedule (a rate's start stays); a new expression starts again from ``PutRule``.

The schedule is on the modeled clock's **time** (``now()``), not a modeled duration: on the manual clock a
due time falls due when ``advance`` reaches it (in time order with every other modeled action); on the scaled
clock (the wall clock) when the wall clock does, so ``cron(0 3 * * ? *)`` fires at 03:00 UTC.

Controls: ``schedules`` lists the scheduled rules (``next`` due time, ``fired`` count); ``schedules/fire``
``{"rule": name, "count": 1}`` fires a rule's next due times: on the manual clock by advancing the clock to
each (everything else due before happens too, as it would); on the scaled clock, whose time the code under
test reads from the wall clock and the sandbox cannot move, it delivers them at once, each with its own due
time, and the schedule goes on after them. Each firing is recorded (``records`` control, name
``schedule_firings``: ``{"rule", "time", "event_id", "deliveries": [{"target", "body"}]}``).

moto 5.2.5 stores a schedule expression and never runs it, accepts any ``cron(...)`` and ``rate(<n> minute...)``
(``cron(bogus)``, ``rate(0 minutes)``, ``rate(1 minutes)``), and delivers every event put on the bus to a rule
that has a schedule and no pattern (see ``eventbridge.py``).
"""

from __future__ import annotations

import calendar
import re
import uuid
from datetime import date, datetime, timedelta, timezone

INVALID = "Parameter ScheduleExpression is not valid."
RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
CRON = re.compile(r"^cron\(([^()]*)\)$")
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
MONTHS = {
    name: index
    for index, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
    )
}
DAYS = {name: index for index, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}
FIELDS = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 1, 7, DAYS),
    ("year", 1970, 2199, {}),
)
LAST_YEAR = 2199


class InvalidSchedule(ValueError):
    pass


def _value(text, low, high, names):
    number = names.get(text.upper()) if text.upper() in names else (int(text) if text.isdigit() else None)
    if number is None or not low <= number <= high:
        raise InvalidSchedule(f"{text!r} is not in {low}-{high}")
    return number


def _values(field, low, high, names):
    """A field of ``, - * /`` items -> the set of values it selects."""
    selected = set()
    for item in field.split(","):
        base, _slash, step = item.partition("/")
        if _slash and (not step.isdigit() or int(step) < 1):
            raise InvalidSchedule(f"bad increment in {item!r}")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start, _dash, end = base.partition("-")
            first, last = _value(start, low, high, names), _value(end, low, high, names)
        else:
            first = _value(base, low, high, names)
            last = high if _slash else first
        if last < first:
            raise InvalidSchedule(f"empty range {item!r}")
        selected.update(range(first, last + 1, int(step) if _slash else 1))
    return frozenset(selected)


def aws_weekday(day):
    """1 (Sunday) to 7 (Saturday), as the day-of-week field counts."""
    return (day.weekday() + 1) % 7 + 1


def _nearest_weekday(year, month, wanted):
    """``<n>W``: the weekday nearest the n-th, never crossing into another month."""
    last = calendar.monthrange(year, month)[1]
    if wanted > last:
        return None
    day = date(year, month, wanted)
    if day.weekday() == 5:  # Saturday -> Friday before, or Monday after on the 1st
        return wanted - 1 if wanted > 1 else wanted + 2
    if day.weekday() == 6:  # Sunday -> Monday after, or Friday before on the last day
        return wanted + 1 if wanted < last else wanted - 2
    return wanted


class Cron:
    def __init__(self, expression, fields):
        if len(fields) != 6:
            raise InvalidSchedule("a cron expression has six fields")
        self.expression = expression
        minutes, hours, dom, month, dow, year = fields
        if (dom == "?") == (dow == "?"):
            raise InvalidSchedule("exactly one of day-of-month and day-of-week must be '?'")
        self.minutes = _values(minutes, *FIELDS[0][1:])
        self.hours = _values(hours, *FIELDS[1][1:])
        self.months = _values(month, *FIELDS[3][1:])
        self.years = _values(year, *FIELDS[5][1:])
        self.day_matcher = self._day_of_month(dom) if dom != "?" else self._day_of_week(dow)

    @staticmethod
    def _day_of_month(field):
        if field == "L":
            return lambda day: day.day == calendar.monthrange(day.year, day.month)[1]
        if field == "LW":

            def last_weekday(day):
                last = calendar.monthrange(day.year, day.month)[1]
                return day.day == _nearest_weekday(day.year, day.month, last)

            return last_weekday
        if field.endswith("W"):
            wanted = _value(field[:-1], 1, 31, {})
            return lambda day: day.day == _nearest_weekday(day.year, day.month, wanted)
        days = _values(field, *FIELDS[2][1:])
        return lambda day: day.day in days

    @staticmethod
    def _day_of_week(field):
        if field == "L":
            return lambda day: aws_weekday(day) == 7
        if field.endswith("L"):
            weekday = _value(field[:-1], 1, 7, DAYS)
            return lambda day: aws_weekday(day) == weekday and day.day + 7 > calendar.monthrange(day.year, day.month)[1]
        if "#" in field:
            weekday_text, _hash, nth_text = field.partition("#")
            weekday = _value(weekday_text, 1, 7, DAYS)
            nth = _value(nth_text, 1, 5, {})
            return lambda day: aws_weekday(day) == weekday and (day.day - 1) // 7 + 1 == nth
        days = _values(field, *FIELDS[4][1:])
        return lambda day: aws_weekday(day) in days

    def next_after(self, moment, anchor=None):
        """The first due time strictly after ``moment`` (a UTC datetime), or None if there is none before 2200."""
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        hours, minutes = sorted(self.hours), sorted(self.minutes)
        day = start.date()
        while day.year <= LAST_YEAR:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                continue
            if self.day_matcher(day):
                for hour in hours:
                    for minute in minutes:
                        due = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
                        if due >= start:
                            return due
            day += timedelta(days=1)
        return None


class Rate:
    def __init__(self, expression, value, unit):
        self.expression = expression
        self.period = timedelta(seconds=value * UNIT_SECONDS[unit.rstrip("s")])

    def next_after(self, moment, anchor=None):
        """The first ``anchor + k * period`` (k >= 1) strictly after ``moment``."""
        anchor = anchor or moment
        periods = max(1, int((moment - anchor) / self.period) + 1)
        due = anchor + periods * self.period
        while due <= moment:
            due += self.period
        return due


def parse(expression):
    """A schedule expression -> ``Rate`` or ``Cron``; ``InvalidSchedule`` when AWS would refuse it."""
    text = (expression or "").strip()
    rate = RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise InvalidSchedule(f"{text!r}: a value of 1 takes a singular unit, a larger one a plural unit")
        return Rate(text, value, unit)
    cron = CRON.match(text)
    if cron:
        return Cron(text, cron.group(1).split())
    raise InvalidSchedule(f"{text!r} is neither rate(...) nor cron(...)")


def install(context):
    """Patch moto's ``EventsBackend.put_rule`` (validation, schedule) and ``delete_rule`` (unschedule); run due
    rules from the modeled clock's queue."""
    from moto.events.exceptions import ValidationException
    from moto.events.models import EventsBackend, events_backends

    from . import eventbridge

    moto_put_rule = EventsBackend.put_rule
    moto_delete_rule = EventsBackend.delete_rule

    def schedules():
        return context.controls_state.setdefault("schedules", {})

    def find_rule(state):
        bus = events_backends[state["account"]][state["region"]].event_buses.get("default")
        rule = bus.rules.get(state["name"]) if bus else None
        return rule if rule is not None and rule.scheduled_expression == state["expression"] else None

    def plan(key, state, after):
        state["next"] = state["schedule"].next_after(after, state["anchor"])
        state["entry"] = None
        if state["next"] is not None:
            # A due time on the clock's own time line: on the scaled clock the wall clock, never divided by the scale.
            due_in = (state["next"] - context.now()).total_seconds()
            state["entry"] = context.at(
                context.clock.elapsed() + max(0.0, due_in),
                lambda: run(key),
                f"schedule {state['name']} {state['next']:%Y-%m-%dT%H:%M:%SZ}",
            )

    def fire(key, state):
        """Deliver the due time ``state["next"]`` now (if the rule is enabled), then plan the next one."""
        rule, due = find_rule(state), state["next"]
        if rule is None:
            forget(key)
            return None
        firing = None
        if rule.state == "ENABLED":
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": state["account"],
                "time": due,
                "region": state["region"],
                "resources": [rule.arn],
                "detail": {},
                "ingestion-time": context.now(),
            }
            deliveries = eventbridge.deliver(rule, event)
            firing = {
                "rule": state["name"],
                "time": eventbridge.iso_time(due),
                "event_id": event["id"],
                "deliveries": deliveries,
            }
            state["fired"] += 1
            context.record("schedule_firings", firing)
        plan(key, state, due)
        return firing

    def run(key):
        state = schedules().get(key)
        if state is not None:
            fire(key, state)

    def forget(key):
        state = schedules().pop(key, None)
        if state and state["entry"] is not None:
            context.cancel(state["entry"])

    def track(backend, rule):
        key = rule.arn
        if not rule.scheduled_expression:
            forget(key)
            return
        known = schedules().get(key)
        if known and known["expression"] == rule.scheduled_expression:
            return
        forget(key)
        now = context.now()
        state = {
            "name": rule.name,
            "account": backend.account_id,
            "region": backend.region_name,
            "expression": rule.scheduled_expression,
            "schedule": parse(rule.scheduled_expression),
            "anchor": now.replace(microsecond=0),
            "fired": 0,
            "entry": None,
            "next": None,
        }
        schedules()[key] = state
        plan(key, state, now)

    def put_rule(self, name, *args, **kwargs):
        expression = kwargs.get("scheduled_expression")
        if expression:
            try:
                parse(expression)
            except InvalidSchedule as exc:
                raise ValidationException(INVALID) from exc
        rule = moto_put_rule(self, name, *args, **kwargs)
        with context.lock:
            track(self, rule)
        return rule

    def delete_rule(self, name, event_bus_arn=None):
        bus = self._get_event_bus(self._normalize_event_bus_arn(event_bus_arn))
        rule = bus.rules.get(name)
        moto_delete_rule(self, name, event_bus_arn)
        if rule is not None:
            with context.lock:
                forget(rule.arn)

    EventsBackend.put_rule = put_rule
    EventsBackend.delete_rule = delete_rule

    def listing():
        return [
            {
                "rule": state["name"],
                "expression": state["expression"],
                "next": eventbridge.iso_time(state["next"]) if state["next"] else None,
                "fired": state["fired"],
                "state": getattr(find_rule(state), "state", None),
            }
            for state in sorted(schedules().values(), key=lambda s: s["name"])
        ]

    @context.control("schedules")
    def _schedules_control(payload):
        """The scheduled rules: ``{"schedules": [{"rule", "expression", "next", "fired", "state"}]}``."""
        return {"schedules": listing()}

    @context.control("schedules/fire")
    def _fire_control(payload):
        """``{"rule": name, "count": 1}``: run the rule's next ``count`` due times (see the module's text)."""
        name = payload.get("rule")
        found = [(key, state) for key, state in schedules().items() if state["name"] == name]
        if not found:
            raise KeyError(
                f"no scheduled rule named {name!r}; scheduled: {', '.join(s['rule'] for s in listing()) or 'none'}"
            )
        key, state = found[0]
        fired = []
        for _index in range(max(1, int(payload.get("count") or 1))):
            if schedules().get(key) is not state or state["next"] is None:
                break
            if context.clock.scale:
                context.cancel(state["entry"])
                firing = fire(key, state)
                if firing:
                    fired.append(firing)
                continue
            seen = len(context.records.get("schedule_firings", []))
            # To the queued due time itself (and a microsecond on, against float rounding): the action runs there.
            context.advance(max(0.0, state["entry"][0] - context.clock.elapsed()) + 1e-6)
            fired.extend(f for f in context.records.get("schedule_firings", [])[seen:] if f["rule"] == name)
        return {"fired": fired, "now": context.now().isoformat(), "schedules": listing()}
