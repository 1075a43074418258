"""The admin console in a real browser, against the real binary, driven by role and label
(DESIGN section 9)."""

import os
import re

from playwright.sync_api import Page, expect

from conftest import BASE, call

SHOTS = os.environ.get("CONSOLE_SHOTS", "target/console-report")


def sign_in(page: Page, key: str):
    page.get_by_role("textbox", name="API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_visible()


def key_row(page: Page, name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


def cell(page: Page, row, header: str):
    """The cell of `row` under the column headed `header`."""
    headers = page.get_by_role("columnheader").all_inner_texts()
    return row.locator("th, td").nth(headers.index(header))


def secret_from_dialog(page: Page) -> str:
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("won't be shown again")
    secret = dialog.locator("code").inner_text().strip()
    assert secret.startswith("kl_live_"), secret
    return secret


def close_secret(page: Page, secret: str):
    page.get_by_role("button", name="Done", exact=True).click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert secret not in page.content(), "the secret is still in the DOM"
    storage = page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert secret not in storage, "the secret is in sessionStorage"
    assert secret not in page.evaluate("JSON.stringify(Object.entries(localStorage))")
    assert secret not in page.evaluate("document.cookie")


def test_the_console_answers_with_html_csp_and_no_framing():
    for path, ctype in [
        ("/console", "text/html"),
        ("/console/app.js", "text/javascript"),
        ("/console/app.css", "text/css"),
        ("/console/vendor/uplot-1.6.32.esm.js", "text/javascript"),
        ("/console/vendor/uplot-1.6.32.min.css", "text/css"),
    ]:
        status, headers, _ = call("GET", path)
        assert status == 200, path
        assert headers["Content-Type"].startswith(ctype), (path, headers["Content-Type"])
        assert headers["Content-Security-Policy"] == "default-src 'self'", path
        assert headers["X-Frame-Options"] == "DENY", path


def test_a_wrong_key_gets_the_apis_detail_on_sign_in(page: Page):
    wrong = "kl_live_thisisnotakey"
    _, _, problem = call("GET", "/whoami", wrong)
    page.get_by_role("textbox", name="API key", exact=True).fill(wrong)
    page.get_by_role("button", name="Sign in", exact=True).click()
    alert = page.get_by_role("alert").filter(has_text="Sign-in refused")
    expect(alert).to_contain_text(problem["detail"])
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_admin_creates_uses_rotates_and_revokes_a_key(page: Page, root):
    org = root["org"]
    sign_in(page, root["key"])
    assert page.evaluate("Object.values(sessionStorage)") == [root["key"]]
    headers = page.get_by_role("columnheader").all_inner_texts()
    for h in ["Name", "Prefix", "Status", "Environment", "Created", "Last used", "Calls", "Success rate"]:
        assert h in headers, headers
    expect(page.get_by_role("combobox", name="Status")).to_be_visible()

    # Create "SAP ERP Integration" with two read scopes.
    page.get_by_role("button", name="Create API key").click()
    form = page.get_by_role("dialog", name="Create API key")
    form.get_by_role("textbox", name="Name", exact=True).fill("SAP ERP Integration")
    form.get_by_role("checkbox", name="work-orders:read", exact=True).check()
    form.get_by_role("checkbox", name="assets:read", exact=True).check()
    form.get_by_role("textbox", name="Allowed IPs").fill("127.0.0.1/32, 10.0.0.0/8")
    form.get_by_label("Expires at").fill("2030-01-01T12:00")
    form.get_by_role("spinbutton", name="Rate limit per minute").fill("120")
    form.get_by_role("button", name="Create", exact=True).click()

    secret = secret_from_dialog(page)
    page.get_by_role("button", name="Copy", exact=True).click()
    expect(page.get_by_role("dialog")).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    close_secret(page, secret)

    # The integration calls the data API: 3 allowed reads and 1 refused (no scope).
    for _ in range(3):
        status, _, _ = call("GET", f"/organizations/{org}/work-orders", secret)
        assert status == 200
    status, _, _ = call("GET", f"/organizations/{org}/locations", secret)
    assert status == 403

    # The list counts them.
    page.get_by_role("button", name="API keys", exact=True).click()
    row = key_row(page, "SAP ERP Integration")
    # The list's counters follow the usage read model (eventually consistent): refresh
    # until it has caught up.
    for _ in range(20):
        if cell(page, row, "Calls").inner_text() == "4":
            break
        page.wait_for_timeout(250)
        page.get_by_role("button", name="Refresh", exact=True).click()
    expect(cell(page, row, "Calls")).to_have_text("4")
    expect(cell(page, row, "Status")).to_have_text("active")
    expect(cell(page, row, "Success rate")).to_have_text("75.0 %")

    # Details: permissions, chart, by-route table, history.
    row.get_by_role("link", name="SAP ERP Integration").click()
    expect(page.get_by_role("heading", name="SAP ERP Integration", level=1)).to_be_visible()
    expect(page.get_by_role("list").filter(has_text="work-orders:read")).to_contain_text("assets:read")
    expect(page.get_by_role("list").filter(has_text="10.0.0.0/8")).to_contain_text("127.0.0.1")
    expect(page.get_by_role("definition").filter(has_text="2030")).to_be_visible()
    expect(page.get_by_role("definition").filter(has_text="120 per minute")).to_be_visible()
    chart = page.get_by_role("img", name=re.compile(r"^Usage"))
    expect(chart).to_have_attribute("aria-label", re.compile(r"4 calls, 1 errors, 0 429s by hour"))
    expect(chart.locator("canvas")).to_have_count(1)
    page.get_by_role("combobox", name="Granularity").select_option("minute")
    page.get_by_role("combobox", name="Range").select_option(label="last hour")
    expect(chart).to_have_attribute("aria-label", re.compile(r"4 calls.* by minute over the last hour"))
    # The chart shows the last query's buckets (60 minutes), not a slower earlier answer.
    expect(chart).to_have_attribute("data-buckets", re.compile(r"^6[01]$"))
    routes = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Route"))
    expect(routes.get_by_role("row").filter(has_text="/organizations/{org}/work-orders")).to_contain_text("3")

    history = page.get_by_role("table").filter(has=page.get_by_role("columnheader", name="Actor"))
    expect(history.get_by_role("row")).to_have_count(2)  # header + KeyCreated
    expect(history).to_contain_text("KeyCreated")
    expect(history).to_contain_text(root["id"])
    page.get_by_role("checkbox", name="Include usage events").check()
    expect(history.get_by_role("row")).to_have_count(6)
    first = history.get_by_role("row").nth(1)
    expect(first).to_contain_text("ApiCallRecorded")  # newest first
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, "console-1280.png"), full_page=True)

    # Rotate with no grace period: the old secret stops, the new one works.
    page.get_by_role("button", name="Rotate", exact=True).click()
    rotate = page.get_by_role("dialog", name=re.compile("^Rotate"))
    rotate.get_by_role("spinbutton", name="Grace period (seconds)").fill("0")
    rotate.get_by_role("button", name="Rotate key").click()
    new_secret = secret_from_dialog(page)
    assert new_secret != secret
    close_secret(page, new_secret)
    expect(page.get_by_role("heading", name="SAP ERP Integration", level=1)).to_be_visible()
    expect(page.get_by_text("Rotated from")).to_be_visible()
    expect(page.get_by_role("definition").filter(has=page.get_by_role("link"))).to_have_count(1)
    assert call("GET", f"/organizations/{org}/work-orders", secret)[0] == 401
    assert call("GET", f"/organizations/{org}/work-orders", new_secret)[0] == 200

    # Revoke the new key, after a confirmation naming it.
    page.get_by_role("button", name="Revoke", exact=True).click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("SAP ERP Integration")
    expect(confirm).to_contain_text("break at once")
    confirm.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("definition").filter(has_text=re.compile("^revoked$"))).to_be_visible()
    expect(page.get_by_role("button", name="Revoke", exact=True)).to_be_disabled()
    status, hdrs, problem = call("GET", f"/organizations/{org}/work-orders", new_secret)
    assert status == 401, problem
    assert "invalid_token" in hdrs["WWW-Authenticate"]

    page.get_by_role("button", name="API keys", exact=True).click()
    page.get_by_role("combobox", name="Status").select_option("revoked")
    expect(page.get_by_role("link", name="SAP ERP Integration").first).to_be_visible()

    # Organisation usage: the calls of every key, the test's own included.
    page.get_by_role("button", name="Organisation usage").click()
    org_chart = page.get_by_role("img", name=re.compile(r"^Organisation usage"))
    expect(org_chart.locator("canvas")).to_have_count(1)
    expect(page.get_by_role("region", name="All time")).to_contain_text("Calls")

    # Sign out forgets the key.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("textbox", name="API key", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_key_without_create_sees_creation_disabled_with_a_reason(page: Page, root):
    org = root["org"]
    status, _, reader = call("POST", f"/organizations/{org}/api-keys", root["key"],
                             {"name": "Read-only auditor", "scopes": ["api-keys:read"]})
    assert status == 201, reader
    sign_in(page, reader["secret"])
    button = page.get_by_role("button", name="Create API key")
    expect(button).to_be_disabled()
    expect(button).to_have_accessible_description(re.compile("api-keys:create"))


def test_scopes_the_signed_in_key_lacks_are_disabled_with_a_reason(page: Page, root):
    org = root["org"]
    status, _, creator = call("POST", f"/organizations/{org}/api-keys", root["key"], {
        "name": "Team lead", "scopes": ["api-keys:read", "api-keys:create", "work-orders:read"]})
    assert status == 201, creator
    sign_in(page, creator["secret"])
    page.get_by_role("button", name="Create API key").click()
    form = page.get_by_role("dialog", name="Create API key")
    expect(form.get_by_role("checkbox", name="work-orders:read", exact=True)).to_be_enabled()
    lacking = form.get_by_role("checkbox", name="assets:write", exact=True)
    expect(lacking).to_be_disabled()
    expect(lacking).to_have_accessible_description(re.compile("does not hold"))
    # The catalogue is the served document's: every scope has a checkbox.
    _, _, doc = call("GET", "/openapi.json")
    for scope in doc["components"]["schemas"]["ScopeName"]["enum"]:
        expect(form.get_by_role("checkbox", name=scope, exact=True)).to_have_count(1)
    # The form is usable from the keyboard: Escape closes it.
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_a_stale_edit_is_refused_and_explained(page: Page, root):
    org = root["org"]
    status, _, k = call("POST", f"/organizations/{org}/api-keys", root["key"],
                        {"name": "Edited twice", "scopes": ["assets:read"]})
    assert status == 201, k
    sign_in(page, root["key"])
    page.get_by_role("link", name="Edited twice", exact=True).click()
    page.get_by_role("button", name="Edit", exact=True).click()
    edit = page.get_by_role("dialog", name=re.compile("^Edit"))
    # Someone else renames it meanwhile.
    status, _, _ = call("PATCH", f"/organizations/{org}/api-keys/{k['id']}", root["key"], {"name": "Renamed elsewhere"})
    assert status == 200
    edit.get_by_role("textbox", name="Name", exact=True).fill("My new name")
    edit.get_by_role("checkbox", name="locations:read", exact=True).check()
    edit.get_by_role("button", name="Save").click()
    expect(edit.get_by_role("alert")).to_contain_text("Someone else changed this key")
    edit.get_by_role("button", name="Cancel").click()
    # A fresh edit (with the current version) goes through.
    page.get_by_role("button", name="API keys", exact=True).click()
    page.get_by_role("link", name="Renamed elsewhere", exact=True).click()
    page.get_by_role("button", name="Edit", exact=True).click()
    edit.get_by_role("textbox", name="Name", exact=True).fill("My new name")
    edit.get_by_role("checkbox", name="locations:read", exact=True).check()
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="My new name", level=1)).to_be_visible()
    expect(page.get_by_role("list").filter(has_text="assets:read")).to_contain_text("locations:read")


def test_the_console_is_usable_from_the_keyboard_alone(page: Page, root):
    page.get_by_role("textbox", name="API key", exact=True).focus()
    page.keyboard.type(root["key"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="API keys", level=1)).to_be_focused()
    # Tab reaches "Create API key"; Enter opens the form with the focus in Name.
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Create API key":
            break
    else:
        raise AssertionError("Tab never reached Create API key")
    page.keyboard.press("Enter")
    expect(page.get_by_role("textbox", name="Name", exact=True)).to_be_focused()
    page.keyboard.type("Keyboard key")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Copy")).to_be_focused()
    secret = secret_from_dialog(page)
    page.keyboard.press("Escape")  # Escape is Done too: the secret goes
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert secret not in page.content()


def test_the_console_reads_at_390_pixels(browser, root):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page = context.new_page()
    page.goto(BASE + "/console")
    page.wait_for_selector("body[data-ready=true]")
    sign_in(page, root["key"])
    expect(page.get_by_role("row").nth(1)).to_be_visible()
    # Rows are cards here, and still a table with its column headers to assistive tech.
    assert "Success rate" in page.get_by_role("columnheader").all_inner_texts()
    row = key_row(page, "root")
    expect(cell(page, row, "Status")).to_be_visible()
    expect(cell(page, row, "Status")).to_have_text("active")
    # Nothing wider than the screen but the tables, which scroll in their own box.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    os.makedirs(SHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SHOTS, "console-390.png"), full_page=True)
    context.close()
