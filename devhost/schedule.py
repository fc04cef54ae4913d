"""NCRONTAB schedules for timer triggers: six fields, seconds first, evaluated in UTC.

The Functions host parses a timer schedule with NCrontab's `CrontabSchedule.TryParse(schedule, new ParseOptions
{ IncludingSeconds = true })`, which takes exactly six fields: second minute hour day month day-of-week (`*`,
lists, ranges, `*/n` and `a-b/n` steps, names). NCrontab matches a day only when BOTH the day-of-month and the
day-of-week fields match (classic cron ORs them when both are restricted), hence `day_or=False`. Times are UTC,
as on a Linux plan without `WEBSITE_TIME_ZONE`/`TZ` (devhost does not read those).

Evaluation is croniter's (`second_at_beginning=True`), not a parser of our own.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from croniter import croniter

FIELDS = 6


class ScheduleError(ValueError):
    """A timer schedule that the host would refuse; the message names the expression."""


@dataclass(frozen=True)
class Schedule:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after `moment` (an aware datetime), in the same time zone."""
        return croniter(self.expression, moment, second_at_beginning=True, day_or=False).get_next(datetime)


def parse_schedule(expression: str) -> Schedule:
    fields = expression.split()
    if len(fields) != FIELDS:
        raise ScheduleError(f"timer schedule {expression!r} is not an NCRONTAB expression with {FIELDS} fields "
                            "(second minute hour day month day-of-week)")
    normalized = " ".join(fields)
    if not croniter.is_valid(normalized, second_at_beginning=True):
        raise ScheduleError(f"timer schedule {expression!r} is not a valid NCRONTAB expression")
    return Schedule(normalized)
