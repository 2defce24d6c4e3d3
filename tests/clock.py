"""Moving the test process's clock to a route's day: stops are recorded from their route's
day on, and routes are planned for days ahead. Only this process's clock moves (the
requests it makes with the APIClient, the services it calls); a worker process started by a
test keeps the real one, as a device's clock and the server's differ."""

from datetime import date, datetime, time

import time_machine
from django.utils import timezone


def on_day(day: date, at: time = time(9, 0)) -> time_machine.travel:
    """`with on_day(route.date):` the clock reads `at` local time on `day`, and goes on
    ticking. An access token issued before is expired by then: sign in inside the block."""
    return time_machine.travel(timezone.make_aware(datetime.combine(day, at)), tick=True)
