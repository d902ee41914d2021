"""Task recurrence (SPEC §10): checking a task's RRULE and finding the due date that follows.

Only the part of RFC 5545 a to-do list needs is accepted: FREQ DAILY to YEARLY, INTERVAL, BYMONTH,
BYMONTHDAY, BYDAY, and COUNT or UNTIL. Occurrences are found by calendar arithmetic rather than
by iterating dateutil's `rrule`: for a valid rule that rarely or never matches again, such as
`FREQ=DAILY;INTERVAL=7;BYDAY=MO` on a task due on a Tuesday, dateutil steps through every
period up to the year 9999, whatever UNTIL it is given, which takes seconds (it also raises
IndexError for FREQ=YEARLY with BYMONTH and an ordinal above 5, refused here). Here, which days
of a year a rule picks depends only on whether the year is a leap year, the weekday it starts
on and where the INTERVAL grid falls in it, so each such kind of year is examined once and a
search takes milliseconds. The tests compare the results with dateutil's.
"""

import calendar
import functools
import math
import re
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import TypeVar

MAX_RULE_LENGTH = 500

_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
_PARTS = ("FREQ", "INTERVAL", "BYMONTH", "BYMONTHDAY", "BYDAY", "COUNT", "UNTIL")
_SUPPORTED = "use FREQ, INTERVAL, BYDAY, BYMONTHDAY, BYMONTH, COUNT or UNTIL"
_LONGEST_MONTHS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years exist
_LAST_DAY = date(9998, 12, 31)
# Whether a year is a leap year and the weekday of its 1 January, by the year modulo 400.
_YEAR_KINDS = tuple(
    (calendar.isleap(year), date(year, 1, 1).weekday()) for year in range(2000, 2400)
)
_KINDS_OF_YEAR = frozenset(_YEAR_KINDS)  # 14: leap or not, starting on each weekday
# Day of the year (0 = 1 January) each month starts on, and one past the end: common, leap year.
_MONTH_STARTS = tuple(
    tuple(
        sum(calendar.monthrange(year, month)[1] for month in range(1, end)) for end in range(1, 14)
    )
    for year in (2001, 2004)
)
_T = TypeVar("_T")

_TEXT = re.compile(r"[A-Z0-9=;,+-]+")
_NUMBER = re.compile(r"[0-9]+")
_MONTH = re.compile(r"[0-9]{1,2}")
_MONTHDAY = re.compile(r"[+-]?[0-9]{1,2}")
_WEEKDAY = re.compile(r"([+-]?[0-9]{1,2})?(MO|TU|WE|TH|FR|SA|SU)")
_UNTIL = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})(?:T([0-9]{2})([0-9]{2})([0-9]{2})(Z?))?")


@dataclass(frozen=True, slots=True)
class _Rule:
    freq: str
    interval: int = 1
    months: tuple[int, ...] = ()
    monthdays: tuple[int, ...] = ()
    weekdays: tuple[tuple[int | None, int], ...] = ()  # (ordinal or None, 0 = Monday)
    count: int | None = None
    until: str | None = None

    def __str__(self) -> str:
        parts = [f"FREQ={self.freq}"]
        if self.interval != 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.months:
            parts.append("BYMONTH=" + ",".join(map(str, self.months)))
        if self.monthdays:
            parts.append("BYMONTHDAY=" + ",".join(map(str, self.monthdays)))
        if self.weekdays:
            days = (f"{'' if n is None else n}{_WEEKDAYS[day]}" for n, day in self.weekdays)
            parts.append("BYDAY=" + ",".join(days))
        if self.count is not None:
            parts.append(f"COUNT={self.count}")
        if self.until is not None:
            parts.append(f"UNTIL={self.until}")
        return ";".join(parts)


@dataclass(frozen=True, slots=True)
class NextOccurrence:
    due_date: datetime  # timezone-aware, in UTC
    rule: str  # the successor's rule (COUNT decremented), canonical form


def normalise_rule(value: str) -> str:
    """Validate an RRULE value and return its canonical form; ValueError(one clear sentence) if
    invalid.

    Accepted: an optional `RRULE:` prefix, any letter case, white space around the value (not
    inside it), `NAME=VALUE` parts separated by `;` with no empty part (so no trailing `;`), each
    part at most once. The canonical form is upper case without the prefix, parts in the order
    FREQ, INTERVAL, BYMONTH, BYMONTHDAY, BYDAY, COUNT, UNTIL, INTERVAL=1 left out, numbers
    without signs or leading zeros (except a minus), list items in the order given, each once.
    """
    return str(_parse(value))


def valid_time_zone(name: str) -> str:
    """Return `name` if it is an IANA zone name known to zoneinfo.available_timezones(), else
    ValueError. Zone names are case-sensitive, as in the tz database."""
    if name not in _zone_names():
        raise ValueError("must be an IANA time zone name such as Europe/Berlin")
    return name


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def next_occurrence(rule: str, due_date: datetime, time_zone: str | None) -> NextOccurrence | None:
    """The occurrence after `due_date` (aware, any offset) under `rule` (already canonical)
    evaluated in `time_zone` (None = UTC); None if the rule is exhausted (COUNT=1, past UNTIL, or
    no occurrence before year 9999).

    The rule starts at `due_date`: occurrences keep its wall-clock time in the zone, and where
    the rule leaves something open (the day of the month for a plain FREQ=MONTHLY, say) it is
    taken from the due date, as RFC 5545 takes it from DTSTART.
    """
    if due_date.utcoffset() is None:
        raise ValueError("due_date must be timezone-aware")
    parsed = _parse(rule)
    if parsed.count == 1:
        return None
    zone = zoneinfo.ZoneInfo(time_zone or "UTC")
    try:
        start = due_date.astimezone(zone)
    except OverflowError:  # within hours of the ends of the calendar
        return None
    day = _next_day(parsed, start.date())
    if day is None:
        return None
    # The same wall-clock time on the new day, whatever daylight saving does in between. A time
    # skipped by a spring-forward gap, or repeated when clocks go back, resolves as zoneinfo
    # does with fold=0: the offset in force before the change (02:30 in a gap becomes 03:30).
    local = datetime.combine(day, start.time().replace(fold=0), tzinfo=zone)
    if parsed.until is not None and not _within_until(local, parsed.until):
        return None
    successor = parsed if parsed.count is None else replace(parsed, count=parsed.count - 1)
    return NextOccurrence(local.astimezone(UTC), str(successor))


def _parse(value: str) -> _Rule:
    if len(value) > MAX_RULE_LENGTH:
        raise ValueError(f"must be at most {MAX_RULE_LENGTH} characters")
    text = value.strip()
    if not text.isascii():  # before upper(), which turns some other letters into ASCII ones
        raise ValueError("must be an RRULE value such as FREQ=WEEKLY;BYDAY=MO,WE")
    text = text.upper().removeprefix("RRULE:")
    if not text:
        raise ValueError("must not be empty")
    if not _TEXT.fullmatch(text):
        raise ValueError("must be an RRULE value such as FREQ=WEEKLY;BYDAY=MO,WE")
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, equals, part_value = part.partition("=")
        if not name or not equals:
            raise ValueError("must be NAME=VALUE parts separated by semicolons")
        if name not in _PARTS:
            raise ValueError(f"{name} is not supported; {_SUPPORTED}")
        if name in parts:
            raise ValueError(f"{name} must not be given more than once")
        parts[name] = part_value
    return _rule_from(parts)


def _rule_from(parts: dict[str, str]) -> _Rule:
    freq = parts.get("FREQ")
    if freq is None:
        raise ValueError("FREQ is required")
    if freq not in _FREQUENCIES:
        raise ValueError("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    rule = _Rule(freq)
    if "INTERVAL" in parts:
        rule = replace(rule, interval=_number(parts["INTERVAL"], "INTERVAL", 366))
    if "BYMONTH" in parts:
        rule = replace(rule, months=_items(parts["BYMONTH"], _month))
    if "BYMONTHDAY" in parts:
        if freq == "WEEKLY":
            raise ValueError("BYMONTHDAY cannot be used with FREQ=WEEKLY")
        rule = replace(rule, monthdays=_items(parts["BYMONTHDAY"], _monthday))
    if "BYDAY" in parts:
        rule = replace(rule, weekdays=_items(parts["BYDAY"], functools.partial(_weekday, freq)))
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("COUNT and UNTIL cannot both be given")
    if "COUNT" in parts:
        rule = replace(rule, count=_number(parts["COUNT"], "COUNT", 1000))
    if "UNTIL" in parts:
        _until(parts["UNTIL"])
        rule = replace(rule, until=parts["UNTIL"])
    if freq == "YEARLY" and rule.months and any(n and abs(n) > 5 for n, _ in rule.weekdays):
        raise ValueError("with BYMONTH a BYDAY ordinal counts within the month: 1 to 5 or -5 to -1")
    if (
        rule.months
        and rule.monthdays
        and not any(
            abs(day) <= _LONGEST_MONTHS[month - 1]
            for month in rule.months
            for day in rule.monthdays
        )
    ):
        raise ValueError("never occurs: no month in BYMONTH has a day in BYMONTHDAY")
    return rule


def _number(text: str, name: str, highest: int) -> int:
    if not _NUMBER.fullmatch(text) or not 1 <= int(text) <= highest:
        raise ValueError(f"{name} must be an integer from 1 to {highest}")
    return int(text)


def _items(text: str, item: Callable[[str], _T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(item(piece) for piece in text.split(",")))


def _month(text: str) -> int:
    if not _MONTH.fullmatch(text) or not 1 <= int(text) <= 12:
        raise ValueError("BYMONTH must list months from 1 to 12")
    return int(text)


def _monthday(text: str) -> int:
    if not _MONTHDAY.fullmatch(text) or not 1 <= abs(int(text)) <= 31:
        raise ValueError("BYMONTHDAY must list days from 1 to 31 or from -31 to -1")
    return int(text)


def _weekday(freq: str, text: str) -> tuple[int | None, int]:
    match = _WEEKDAY.fullmatch(text)
    if match is None or (match[1] is not None and not 1 <= abs(int(match[1])) <= 53):
        raise ValueError("BYDAY must list weekdays MO to SU, each perhaps after an ordinal like -1")
    ordinal = None if match[1] is None else int(match[1])
    if ordinal is not None and freq in ("DAILY", "WEEKLY"):
        raise ValueError("a BYDAY ordinal such as 1MO needs FREQ=MONTHLY or FREQ=YEARLY")
    if ordinal is not None and freq == "MONTHLY" and abs(ordinal) > 5:
        raise ValueError("with FREQ=MONTHLY a BYDAY ordinal must be from 1 to 5 or -5 to -1")
    return ordinal, _WEEKDAYS.index(match[2])


def _until(text: str) -> datetime:
    """UNTIL as a naive date and time: YYYYMMDD (then 00:00), YYYYMMDDTHHMMSS or …Z."""
    match = _UNTIL.fullmatch(text)
    try:
        if match is None or int(match[1]) > 9998:
            raise ValueError
        year, month, day, hour, minute, second = (int(number) for number in match.groups("0")[:6])
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        raise ValueError(
            "UNTIL must be a real date YYYYMMDD or time YYYYMMDDTHHMMSS[Z] before the year 9999"
        ) from None


def _within_until(occurrence: datetime, until: str) -> bool:
    limit = _until(until)
    if until.endswith("Z"):  # an instant
        return occurrence <= limit.replace(tzinfo=UTC)
    if "T" in until:  # a wall-clock time in the task's zone
        return occurrence.replace(tzinfo=None) <= limit
    return occurrence.date() <= limit.date()  # the whole of that day in the task's zone


def _next_day(rule: _Rule, start: date) -> date | None:
    """The first day after `start` on which `rule`, started on `start`, occurs, up to 9998-12-31.

    Which days of a year the rule picks depends only on the year's kind: leap or not, the weekday
    of 1 January, and where the INTERVAL grid of periods falls in it. A kind of year without an
    occurrence is not searched again, and the kinds repeat after `_cycle_years`, so the search
    ends there or at 9998, whichever comes first."""
    selection = _Selection.of(rule, start)
    if selection is None:
        return None
    after = start.toordinal()
    tables: dict[tuple[bool, int], frozenset[int]] = {}
    empty: set[tuple[bool, int, int]] = set()
    last_year = min(_LAST_DAY.year, start.year + _cycle_years(rule))
    year = start.year
    while year <= last_year:
        leap, weekday = _YEAR_KINDS[year % 400]
        table = tables.get((leap, weekday))
        if table is None:
            table = tables[leap, weekday] = selection.days(leap, weekday)
            if len(tables) == len(_KINDS_OF_YEAR) and not any(tables.values()):
                return None  # no day of any year is selected
        if not table:
            year += 1
            continue
        first = date(year, 1, 1).toordinal()
        offset = _grid_offset(rule, start, year, first)
        grid_year = _grid_year(rule, selection, year, first, offset)
        if grid_year > year:  # no day of the grid in this year
            year = grid_year
            continue
        if (leap, weekday, offset) not in empty:
            for day in _grid(rule, offset, first, leap):
                if day in table and first + day > after:
                    return date.fromordinal(first + day)
            if year > start.year:  # the start's own year was only searched after the start
                empty.add((leap, weekday, offset))
        year += 1
    return None


def _grid_year(rule: _Rule, selection: "_Selection", year: int, first: int, offset: int) -> int:
    """The year of the first day, from 1 January of `year` (day `first`) on, in a period of the
    INTERVAL grid, given the grid's offset in `year`. For FREQ=DAILY, the first such day on a
    weekday BYDAY allows, so that a grid drifting slowly through the weekdays and months does
    not cost a step for every year."""
    if rule.freq == "DAILY":
        day = first + offset
        if selection.weekdays:  # INTERVAL is no multiple of 7 here: all weekdays come round
            days = range(day, day + 7 * rule.interval, rule.interval)
            day = next(day for day in days if (day + 6) % 7 in selection.weekdays)
        return _year_of(day)
    if rule.freq == "WEEKLY":
        return _year_of(max(first, 7 * (_week(first) + offset) + 1))
    return year + offset // 12 if rule.freq == "MONTHLY" else year + offset


def _year_of(ordinal: int) -> int:
    return date.fromordinal(min(ordinal, _LAST_DAY.toordinal() + 1)).year


def _cycle_years(rule: _Rule) -> int:
    """After how many years the kinds of year repeat: the calendar repeats every 400 years (146097
    days, 20871 weeks, 4800 months), the INTERVAL grid when it is back where it began as well."""
    per_400_years = {"DAILY": 146097, "WEEKLY": 20871, "MONTHLY": 4800, "YEARLY": 400}
    return 400 * rule.interval // math.gcd(rule.interval, per_400_years[rule.freq])


def _week(ordinal: int) -> int:
    """Weeks start on Monday (RFC 5545's default WKST); day 1 of the proleptic calendar was one."""
    return (ordinal - 1) // 7


def _grid_offset(rule: _Rule, start: date, year: int, first: int) -> int:
    """Where the INTERVAL grid falls in `year` (which begins on day `first`): how many days,
    weeks, months or years from the start of the year to the first period the grid selects."""
    if rule.freq == "DAILY":
        return (start.toordinal() - first) % rule.interval
    if rule.freq == "WEEKLY":
        return (_week(start.toordinal()) - _week(first)) % rule.interval
    if rule.freq == "MONTHLY":
        return (12 * (start.year - year) + start.month - 1) % rule.interval
    return (start.year - year) % rule.interval


def _grid(rule: _Rule, offset: int, first: int, leap: bool) -> Iterable[int]:
    """The days of a year (0 = 1 January) in the periods the INTERVAL grid selects, in order."""
    length, interval = 365 + leap, rule.interval
    if rule.freq == "DAILY":
        return range(offset, length, interval)
    if rule.freq == "WEEKLY":
        mondays = range(7 * (_week(first) + offset) + 1 - first, length, 7 * interval)
        return (day for monday in mondays for day in range(max(monday, 0), min(monday + 7, length)))
    if rule.freq == "MONTHLY":
        starts = _MONTH_STARTS[leap]
        months = range(offset, 12, interval)
        return (day for month in months for day in range(starts[month], starts[month + 1]))
    return range(length) if offset == 0 else range(0)


@dataclass(frozen=True, slots=True)
class _Selection:
    """The days a rule picks within its periods: BYMONTH, BYMONTHDAY and BYDAY, with RFC 5545's
    defaults from the start (DTSTART) when BYMONTHDAY and BYDAY are both absent."""

    months: frozenset[int]
    monthdays: frozenset[int]
    weekdays: frozenset[int]
    nth_weekdays: frozenset[tuple[int, int]]  # (weekday, ordinal)
    nth_in_month: bool  # ordinals count within the month (MONTHLY, or YEARLY with BYMONTH)

    @classmethod
    def of(cls, rule: _Rule, start: date) -> "_Selection | None":
        """The selection for `rule` started on `start`; None if the grid never reaches it."""
        months, monthdays = set(rule.months), set(rule.monthdays)
        weekdays = {day for n, day in rule.weekdays if n is None}
        if not monthdays and not rule.weekdays:
            if rule.freq == "YEARLY":
                months = months or {start.month}
            if rule.freq in ("MONTHLY", "YEARLY"):
                monthdays = {start.day}
            if rule.freq == "WEEKLY":
                weekdays = {start.weekday()}
        # Grids that only ever reach some weekdays or months (found here, rather than by
        # searching every year up to 9998 in vain): every 7th day is the start's weekday, and
        # every nth month is a multiple of gcd(12, n) months away from the start's month.
        if rule.freq == "DAILY" and rule.interval % 7 == 0 and weekdays:
            if start.weekday() not in weekdays:
                return None
            weekdays = set()
        if rule.freq == "MONTHLY" and months:
            step = math.gcd(12, rule.interval)
            months = {month for month in months if (month - start.month) % step == 0}
            if not months:
                return None
        nth_weekdays = {(day, n) for n, day in rule.weekdays if n is not None}
        return cls(
            frozenset(months),
            frozenset(monthdays),
            frozenset(weekdays),
            frozenset(nth_weekdays),
            nth_in_month=rule.freq == "MONTHLY" or bool(rule.months),
        )

    def days(self, leap: bool, weekday: int) -> frozenset[int]:
        """The days selected (0 = 1 January) in a leap year or not, beginning on `weekday`."""
        selected: set[int] = set()
        starts = _MONTH_STARTS[leap]
        for month in self.months or range(1, 13):
            length = starts[month] - starts[month - 1]
            days: Iterable[int] = range(1, length + 1)
            if self.monthdays:  # -1 is the last day of the month
                days = [day for day in days if {day, day - length - 1} & self.monthdays]
            for day in days:
                day_of_year = starts[month - 1] + day
                if self._on_weekday(
                    day, length, (weekday + day_of_year - 1) % 7, day_of_year, leap
                ):
                    selected.add(day_of_year - 1)
        return frozenset(selected)

    def _on_weekday(
        self, day: int, length: int, weekday: int, day_of_year: int, leap: bool
    ) -> bool:
        if not (self.weekdays or self.nth_weekdays) or weekday in self.weekdays:
            return True
        index, size = (day, length) if self.nth_in_month else (day_of_year, 365 + leap)
        from_start, from_end = (index - 1) // 7 + 1, -((size - index) // 7 + 1)
        return bool({(weekday, from_start), (weekday, from_end)} & self.nth_weekdays)
