"""schemathesis hooks of tests/contract/run.sh (loaded with SCHEMATHESIS_HOOKS=hooks).

The harness authenticates with keys of the organisation it tests, and the API lets a key
revoke, rotate or narrow any key it may manage, itself included. Left alone, schemathesis
does exactly that to its own key mid-run (the stateful phase follows `GET /whoami` -> `id`
-> `POST .../revoke`), and every later request proves nothing but a 401. So:

1. Requests are signed with the harness's keys (CONTRACT_TOKENS: the root key and the
   pool run.sh made with it, every scope each), in turn: the rate limiter allows each key
   its plan's 500 requests a minute, and schemathesis sends more than that. Only a
   harness key is ever swapped for another: the checks that send no token or a wrong one
   (`ignored_auth`, `missing_required_header`) still do.
2. A mutating call on a key (PATCH, DELETE, POST .../revoke, POST .../rotate) whose `{id}`
   is one of the harness's own keys (CONTRACT_HARNESS_IDS) is sent to the decoy key
   (CONTRACT_DECOY_ID, a key with every scope made for this) instead: the operation is
   still tested on a real key, and the harness keeps working. Nothing else is changed.
   How many calls were redirected is printed at the end of the run.
3. `ast.parse` is serialised. Hypothesis parses module sources to describe filters, and
   CPython 3.11's AST conversion keeps its recursion depth in per-interpreter state, so
   two workers parsing at once can fail with "SystemError: AST constructor recursion depth
   mismatch": a schemathesis error in the coverage phase that no request caused.

With CONTRACT_HOOKS_STATS=1, every answer is also counted by operation, status and
problem `code` (with the `detail` of 400s and 422s), printed at the end: what the run
actually exercised.
"""

from __future__ import annotations

import ast
import atexit
import itertools
import json
import os
import sys
import threading
import uuid

import schemathesis

TOKENS = [t for t in os.environ["CONTRACT_TOKENS"].split(",") if t]
HARNESS_IDS = {uuid.UUID(i) for i in os.environ["CONTRACT_HARNESS_IDS"].split(",") if i}
DECOY_ID = os.environ["CONTRACT_DECOY_ID"]
STATS = bool(os.environ.get("CONTRACT_HOOKS_STATS"))

KEY = "/organizations/{org}/api-keys/{id}"
MUTATING = {
    ("PATCH", KEY),
    ("DELETE", KEY),
    ("POST", KEY + "/revoke"),
    ("POST", KEY + "/rotate"),
}

_lock = threading.Lock()
_tokens = itertools.cycle(TOKENS)
_bearers = {f"Bearer {t}" for t in TOKENS}
_redirected: dict[str, int] = {}
_statuses: dict[tuple[str, int, str], int] = {}

_ast_parse = ast.parse
_ast_lock = threading.Lock()


def _serialised_parse(*args, **kwargs):
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _serialised_parse


def _next_token() -> str:
    with _lock:
        return next(_tokens)


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
        return _next_token()

    def set(self, case, data, ctx):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    # Containers are replaced, never edited: generated cases may share them.
    # The coverage phase signs all of an operation's cases with one `get`: spread them.
    headers = case.headers
    if headers and headers.get("Authorization") in _bearers:
        case.headers = {**headers, "Authorization": f"Bearer {_next_token()}"}
    name = (case.method.upper(), case.path)
    params = case.path_parameters
    if name in MUTATING and params and _is_harness_key(params.get("id")):
        case.path_parameters = {**params, "id": DECOY_ID}
        with _lock:
            label = f"{name[0]} {name[1]}"
            _redirected[label] = _redirected.get(label, 0) + 1


@schemathesis.hook
def after_call(ctx, case, response):
    if not STATS:
        return
    code = ""
    if response.status_code >= 400:
        try:
            problem = json.loads(response.content)
            code = str(problem.get("code", ""))
            if response.status_code in (400, 422):
                code += ": " + str(problem.get("detail", ""))[:100]
        except (ValueError, AttributeError):
            code = "(not a problem document)"
    signed = "" if (case.headers or {}).get("Authorization") else " (no token)"
    key = (f"{case.method.upper()} {case.path}{signed}", response.status_code, code)
    with _lock:
        _statuses[key] = _statuses.get(key, 0) + 1


@atexit.register
def _report() -> None:
    total = sum(_redirected.values())
    lines = [
        f"contract hooks: {len(TOKENS)} harness keys signed the requests in turn; "
        f"{total} mutating calls aimed at them were sent to the decoy key instead"
    ]
    lines += [f"  {label}: {n}" for label, n in sorted(_redirected.items())]
    lines += [f"  stats: {op} {status} {code}: {n}" for (op, status, code), n in sorted(_statuses.items())]
    print("\n".join(lines), file=sys.stderr)
