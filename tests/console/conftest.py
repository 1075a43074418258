"""Fixtures for the console's browser tests.

tests/console/run.sh starts the real keyledger binary and hands over:
  CONSOLE_BASE      http://127.0.0.1:<port>
  CONSOLE_ROOT_KEY  the bootstrap root key it printed
  CONSOLE_SHOTS     where screenshots go (docs/ to refresh the README's)
The browser is Debian's chromium (CONSOLE_CHROMIUM, default /usr/bin/chromium); Playwright's
own browser download is never used.
"""

import json
import os
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

BASE = os.environ["CONSOLE_BASE"]
ROOT_KEY = os.environ["CONSOLE_ROOT_KEY"]
CHROMIUM = os.environ.get("CONSOLE_CHROMIUM", "/usr/bin/chromium")

# Chrome logs every fetch answered 4xx as a console error ("Failed to load resource"); the
# console makes some on purpose (a wrong key, a stale edit). Anything else logged as an
# error (a CSP violation, an exception, a failed module load) fails the test.
EXPECTED_NETWORK_ERROR = re.compile(r"^Failed to load resource: the server responded with a status of (401|403|412|422)")


def call(method, path, key=None, body=None, headers=None):
    """One HTTP call to the API; returns (status, headers, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            raw = res.read()
            status, hdrs = res.status, res.headers
    except urllib.error.HTTPError as e:
        raw, status, hdrs = e.read(), e.code, e.headers
    ctype = hdrs.get("Content-Type", "")
    return status, hdrs, (json.loads(raw) if raw and "json" in ctype else None)


@pytest.fixture(scope="session")
def root():
    status, _, me = call("GET", "/whoami", ROOT_KEY)
    assert status == 200, me
    return {"key": ROOT_KEY, "org": me["org_id"], "id": me["id"]}


@pytest.fixture(scope="session")
def browser():
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=BASE)
    pg = context.new_page()
    problems = []
    pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}")
          if m.type == "error" and not EXPECTED_NETWORK_ERROR.match(m.text) else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.goto(BASE + "/console")
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    context.close()
    assert problems == [], "the page logged errors (CSP violations included):\n" + "\n".join(problems)
