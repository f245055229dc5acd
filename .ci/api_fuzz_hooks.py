"""Schemathesis hooks for .ci/api-fuzz.sh: long polls are capped so that a
generated `wait_ms` of minutes does not stall the run. Everything else is
sent as generated."""

import schemathesis

WAIT_MS_CAP = 50


def _cap(values):
    if isinstance(values, dict) and isinstance(values.get("wait_ms"), int):
        values["wait_ms"] = min(values["wait_ms"], WAIT_MS_CAP)
    return values


@schemathesis.hook
def map_query(ctx, query):
    return _cap(query)


@schemathesis.hook
def map_body(ctx, body):
    return _cap(body)
