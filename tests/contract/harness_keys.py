"""Makes the keys schemathesis runs with (see hooks.py), with the root key, and prints
them as shell assignments for tests/contract/run.sh:

- CONTRACT_TOKENS: the root key and POOL more keys holding every scope, which sign the
  requests in turn (the rate limiter allows each key 500 requests a minute);
- CONTRACT_HARNESS_IDS: their ids, which no mutating call may target;
- CONTRACT_DECOY_ID: a key with every scope that such calls are sent to instead.

Usage: harness_keys.py POOL (CONTRACT_BASE, CONTRACT_ORG, CONTRACT_TOKEN in the environment).
"""

import json
import os
import shlex
import sys
import urllib.request

BASE = os.environ["CONTRACT_BASE"]
ORG = os.environ["CONTRACT_ORG"]
ROOT = os.environ["CONTRACT_TOKEN"]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{BASE}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {ROOT}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> None:
    pool = int(sys.argv[1])
    document = call("GET", "/openapi.json")
    scopes = document["components"]["schemas"]["ScopeName"]["enum"]
    root = call("GET", "/whoami")
    assert sorted(root["scopes"]) == sorted(scopes), "the root key holds every scope"
    keys = [
        call("POST", f"/organizations/{ORG}/api-keys", {"name": f"contract harness {i}", "scopes": scopes})
        for i in range(pool)
    ]
    decoy = call("POST", f"/organizations/{ORG}/api-keys", {"name": "contract decoy", "scopes": scopes})
    tokens = [ROOT] + [k["secret"] for k in keys]
    ids = [root["id"]] + [k["id"] for k in keys]
    for name, value in [
        ("CONTRACT_TOKENS", ",".join(tokens)),
        ("CONTRACT_HARNESS_IDS", ",".join(ids)),
        ("CONTRACT_DECOY_ID", decoy["id"]),
    ]:
        print(f"export {name}={shlex.quote(value)}")


main()
