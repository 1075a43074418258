"""schemathesis hooks of tests/contract/run.sh (loaded with SCHEMATHESIS_HOOKS=hooks).

The harness authenticates with keys of the organisation it tests, and the API lets a key
revoke, rotate or narrow any key it may manage, itself included. Left alone, schemathesis
does exactly that to its own key mid-run (the stateful phase follows `GET /whoami` -> `id`
-> `POST .../revoke`), and every later request proves nothing but a 401. So:

1. Requests are signed with the harness's keys (CONTRACT_TOKENS: the root key and the
   pool run.sh made with it, every scope each), round-robin: the rate limiter allows
   each key its plan's 500 requests a minute, and schemathesis sends more than that.
2. A mutating call on a key (PATCH, DELETE, POST .../revoke, POST .../rotate) whose `{id}`
   is one of the harness's own keys (CONTRACT_HARNESS_IDS) is sent to the decoy key
   (CONTRACT_DECOY_ID, a key with every scope made for this) instead: the operation is
   still tested on a real key, and the harness keeps working. Nothing else is changed.
   The number of calls redirected is printed at the end of the run.
"""

from __future__ import annotations

import atexit
import itertools
import os
import sys
import threading
import uuid

import schemathesis

TOKENS = [t for t in os.environ["CONTRACT_TOKENS"].split(",") if t]
HARNESS_IDS = {uuid.UUID(i) for i in os.environ["CONTRACT_HARNESS_IDS"].split(",") if i}
DECOY_ID = os.environ["CONTRACT_DECOY_ID"]

KEY = "/organizations/{org}/api-keys/{id}"
MUTATING = {
    ("PATCH", KEY),
    ("DELETE", KEY),
    ("POST", KEY + "/revoke"),
    ("POST", KEY + "/rotate"),
}

_lock = threading.Lock()
_tokens = itertools.cycle(TOKENS)
_redirected: dict[str, int] = {}


def _is_harness_key(raw: object) -> bool:
    """Whether a path's `{id}` names one of the harness's keys, in any form the server's
    UUID parser takes (hyphenated, simple, braced, urn, any case)."""
    if not isinstance(raw, str):
        return False
    try:
        return uuid.UUID(raw.strip()) in HARNESS_IDS
    except ValueError:
        return False


@schemathesis.auth(refresh_interval=None)
class HarnessKeys:
    """Bearer auth with the harness's keys, one after the other."""

    def get(self, case, ctx):
        with _lock:
            return next(_tokens)

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    name = (case.method.upper(), case.path)
    if name not in MUTATING:
        return
    params = case.path_parameters
    if params and _is_harness_key(params.get("id")):
        params["id"] = DECOY_ID
        with _lock:
            label = f"{name[0]} {name[1]}"
            _redirected[label] = _redirected.get(label, 0) + 1


@atexit.register
def _report() -> None:
    total = sum(_redirected.values())
    lines = [
        f"contract hooks: {len(TOKENS)} harness keys signed the requests; "
        f"{total} mutating calls aimed at them were sent to the decoy key instead"
    ]
    lines += [f"  {label}: {n}" for label, n in sorted(_redirected.items())]
    print("\n".join(lines), file=sys.stderr)
