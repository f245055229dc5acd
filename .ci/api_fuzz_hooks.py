"""Schemathesis hooks for .ci/api-fuzz.sh: long polls are capped just before
each call, so that a generated `wait_ms` of minutes (up to the documented
300000, or past it in negative tests) does not stall the run. Everything
else is sent as generated."""

import schemathesis

WAIT_MS_CAP = 50


def _cap(values):
    if isinstance(values, dict):
        wait = values.get("wait_ms")
        if isinstance(wait, int) and wait > WAIT_MS_CAP:
            values["wait_ms"] = WAIT_MS_CAP
        elif isinstance(wait, str) and wait.isdigit() and int(wait) > WAIT_MS_CAP:
            values["wait_ms"] = str(WAIT_MS_CAP)


@schemathesis.hook
def before_call(context, case, kwargs):
    _cap(case.query)
    _cap(case.body)
