"""The review pages in a real browser: sign in, tests, one test, one candidate, export."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.ui.conftest import Demo, axe_violations, screenshot

XSS = "<script>alert(1)</script>"


def sign_in(page: Any, demo: Demo, goto: str = "/ui/tests") -> None:
    page.goto(goto)
    page.wait_for_url(re.compile(r"/ui/\?"))
    page.get_by_label("Client ID").fill(demo.client_id)
    page.get_by_label("API key").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(goto) + "$"))


def no_serious_violations(page: Any) -> None:
    violations = axe_violations(page)
    assert violations == [], json.dumps(violations, indent=2)


def test_sign_in_tests_test_candidate_and_export(page: Any, demo: Demo) -> None:
    # A comment that tries to run a script is shown as text (candidate 2001).
    with demo.http() as http:
        sent = http.post(
            f"/v1/test/{demo.test_id}/candidates/2001/events",
            headers=demo.headers(),
            json={
                "eventId": "xss-1",
                "event": "flag",
                "timeStamp": "2026-06-01T09:45:00.000Z",
                "userId": 9001,
                "flaggingInfo": {"flagType": "note", "comment": XSS, "severityLevel": "low"},
            },
        )
        assert sent.status_code in (200, 201), sent.text
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)

    # Sign in: labelled fields; not signed in, a page sends you to the form first.
    page.goto("/ui/")
    no_serious_violations(page)
    screenshot(page, "1-sign-in")
    sign_in(page, demo)

    # Tests.
    table = page.locator("#tests-table")
    table.wait_for()
    row = table.locator("tbody tr").filter(has_text="Demo: Mathematics final")
    assert row.locator("td").all_inner_texts()[:5] == ["Demo: Mathematics final", "1001", "6", "34", "6"]
    no_serious_violations(page)
    screenshot(page, "2-tests")
    page.get_by_label("Search by title or test id").fill("no such exam")
    page.get_by_role("button", name="Search").click()
    page.get_by_text("No tests match").wait_for()
    page.get_by_label("Search by title or test id").fill("1001")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Demo: Mathematics final").click()

    # One test: summary strip, candidates with flags by severity, network time, filters.
    page.wait_for_url(re.compile(r"/ui/tests/1001$"))
    candidates = page.locator("#candidates-table tbody tr")
    candidates.first.wait_for()
    assert candidates.count() == 6
    summary = page.locator("dl.summary").inner_text()
    for word in ("Candidates\n6", "Severity critical\n1", "Severity high\n1", "Severity medium\n1"):
        assert word in summary
    c2003 = candidates.filter(has_text="C-003").inner_text()
    assert "7 min (2 gaps)" in c2003
    assert "1 medium" in c2003
    no_serious_violations(page)
    screenshot(page, "3-test")
    page.get_by_label("Flagged only").check()
    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"severity=critical"))
    page.locator("#candidates-table").wait_for()
    assert page.locator("#candidates-table tbody tr").all_inner_texts()[0].startswith("2004")
    assert page.locator("#candidates-table tbody tr").count() == 1
    page.goto("/ui/tests/1001?sort=flags&dir=desc")
    page.locator("#candidates-table").wait_for()
    assert page.locator("#candidates-table tbody tr td:first-child").first.inner_text() == "2001"

    # One candidate: the timeline with the flag, its evidence, the network gap.
    page.goto("/ui/tests/1001")
    page.get_by_role("link", name="2002", exact=True).click()
    page.wait_for_url(re.compile(r"/candidates/2002$"))
    flag = page.locator("#ev-demo-2002-5")
    flag.wait_for()
    assert "Severity: high" in flag.inner_text()
    assert "Phone on the desk during the exam." in flag.inner_text()
    assert "Local: 01/06/2026, 11:25:00 CEST" in flag.inner_text()
    assert "2026-06-01 09:25:00.000 UTC" in flag.inner_text()
    gap = page.locator("li.gap").first
    assert "Network down 45 s" in gap.inner_text()
    assert gap.locator("#ev-demo-2002-net1-lost").count() == 1
    image = flag.locator("img")
    image.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth === 160", arg=image.element_handle())
    text_file = flag.get_by_role("link", name="evidence.txt")
    with httpx.Client(timeout=10) as plain:
        evidence = plain.get(text_file.get_attribute("href"))
    assert evidence.status_code == 200
    assert evidence.text.startswith("Invigilator note")
    assert page.locator("li.event.invigilator").count() == 2
    no_serious_violations(page)
    screenshot(page, "4-candidate")

    # Keyboard: arrows move from event to event.
    page.locator("li.event").first.focus()
    page.keyboard.press("ArrowDown")
    assert page.evaluate("document.activeElement.id") == "ev-demo-2002-2"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "ev-demo-2002-9"

    # A permalink to one event.
    page.goto("/ui/tests/1001/candidates/2002#ev-demo-2002-5")
    page.locator("#ev-demo-2002-5.is-target").wait_for()
    assert page.evaluate("document.activeElement.id") == "ev-demo-2002-5"

    # Filters on the timeline.
    page.goto("/ui/tests/1001/candidates/2003?flagged=1")
    page.locator("ol.timeline").wait_for()
    assert page.locator("li.event").count() == 1
    assert page.locator("li.gap").count() == 2  # the gaps stay visible

    # Everything escaped: the comment is text, no script ran.
    page.goto("/ui/tests/1001/candidates/2001")
    comment = page.locator("#ev-xss-1 .comment")
    comment.wait_for()
    assert comment.inner_text() == XSS
    assert dialogs == []

    # Export this test: progress, then the download with its size and SHA-256.
    page.get_by_role("button", name="Export this test").click()
    download_link = page.get_by_role("link", name="Download the export")
    download_link.wait_for(timeout=60_000)
    meta = page.locator(".export-meta").inner_text()
    assert "SHA-256" in meta
    assert "6 of 6 candidates" in page.locator(".export-text").inner_text()
    assert page.locator("progress").get_attribute("value") == "100"
    screenshot(page, "5-export")
    with page.expect_download() as download_info:
        download_link.click()
    body = json.loads(download_info.value.path().read_text())
    assert len(body["candidates"]) == 6
    assert body["candidates"][0]["userId"] == 2001

    # Export this candidate: the same panel, a file with this candidate alone.
    page.goto("/ui/tests/1001/candidates/2003")
    page.locator("ol.timeline").wait_for()
    page.get_by_role("button", name="Export this candidate").click()
    one_link = page.get_by_role("link", name="Download the export")
    one_link.wait_for(timeout=60_000)
    with page.expect_download() as one_info:
        one_link.click()
    one = json.loads(one_info.value.path().read_text())
    assert [c["userId"] for c in one["candidates"]] == [2003]
    assert page.console_problems == []


def test_a_malformed_hash_leaves_the_page_working_and_downloads_are_named_by_job(
    page: Any, demo: Demo
) -> None:
    sign_in(page, demo, "/ui/tests/1001")
    page.locator("#candidates-table").wait_for()
    # Not valid percent-encoding: decoding it throws; the rest of the page must still work.
    page.goto("/ui/tests/1001/candidates/2002#ev-%E0%A4%A")
    page.locator("ol.timeline").wait_for()
    page.get_by_role("button", name="Export this candidate").click()
    link = page.get_by_role("link", name="Download the export")
    link.wait_for(timeout=60_000)
    # Named as the API's own download names the job's file (not test-1001-events.json).
    job_id = page.evaluate(
        "() => performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('jobId='))[0].split('jobId=')[1]"
    )
    assert link.get_attribute("download") == f"test-1001-events-{job_id}.json"
    screenshot(page, "6-malformed-hash-export")
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == f"test-1001-events-{job_id}.json"
    assert [c["userId"] for c in json.loads(info.value.path().read_text())["candidates"]] == [2002]
    # The timeline's keyboard set-up ran too.
    page.locator("li.event").first.focus()
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "ev-demo-2002-9"
    assert [p for p in page.console_problems if p.startswith("page error")] == []


def test_expiry_sign_out_and_other_tenants(page: Any, demo: Demo) -> None:
    sign_in(page, demo, "/ui/tests/1001")
    page.locator("#candidates-table").wait_for()

    # A token the server no longer accepts: back to the form with a message.
    page.evaluate(
        "() => sessionStorage.setItem('examtrail.session',"
        " JSON.stringify({token: 'expired.token.value', expiresAt: Date.now() + 60000}))"
    )
    page.goto("/ui/tests/1001/candidates/2002")
    page.wait_for_url(re.compile(r"/ui/\?expired=1"))
    page.get_by_text("Your session has expired").wait_for()
    assert page.evaluate("sessionStorage.getItem('examtrail.session')") is None

    # Signing in again brings the person back where they were.
    page.get_by_label("Client ID").fill(demo.client_id)
    page.get_by_label("API key").fill(demo.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/candidates/2002$"))
    page.locator("ol.timeline").wait_for()

    # The clock runs out in the tab: the same, without a request failing first.
    page.evaluate(
        "() => { const s = JSON.parse(sessionStorage.getItem('examtrail.session'));"
        " s.expiresAt = Date.now() + 500; sessionStorage.setItem('examtrail.session', JSON.stringify(s)); }"
    )
    page.reload()
    page.wait_for_url(re.compile(r"/ui/\?expired=1"), timeout=10_000)

    # A wrong key is refused with a message.
    page.get_by_label("Client ID").fill(demo.client_id)
    page.get_by_label("API key").fill("etk_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "not right" in page.get_by_role("alert").inner_text()

    # Another tenant's test: the same 404 as the API.
    sign_in(page, demo, "/ui/tests")
    other = demo_other_tenant(demo)
    page.goto(f"/ui/tests/{other}")
    assert "not found" in page.get_by_role("alert").inner_text()

    # Signing out forgets the token.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/ui/$"))
    assert page.evaluate("sessionStorage.getItem('examtrail.session')") is None
    page.goto("/ui/tests")
    page.wait_for_url(re.compile(r"/ui/\?next="))


def demo_other_tenant(demo: Demo) -> int:
    from tests.support.processes import run_cli

    created = run_cli(
        ["clients", "create", "--tenant", "elsewhere", "--scopes", "ingest", "--json"], demo.env
    )
    assert created.returncode == 0, created.stderr
    client = json.loads(created.stdout)
    with demo.http() as http:
        headers = bearer_for(http, client["clientId"], client["apiKey"])
        assert http.put("/v1/test/777", json={"title": "Not yours"}, headers=headers).status_code == 201
    return 777


def bearer_for(http: httpx.Client, client_id: str, api_key: str) -> dict[str, str]:
    from tests.support.api import bearer, get_token

    return bearer(get_token(http, client_id, api_key))


def test_security_headers_and_assets(demo: Demo) -> None:
    with demo.http() as http:
        for path in ("/ui/", "/ui/tests", "/ui/tests/1001/candidates/2001", "/ui/static/ui.js"):
            response = http.get(path)
            assert response.status_code == 200, path
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy
            assert "unsafe-inline" not in policy
            assert response.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in http.get("/ui/").text.replace(
            '<script src="/ui/static/ui.js" defer></script>', ""
        )
        assert http.get("/ui/fragments/tests").status_code == 401
        assert http.get("/ui/fragments/tests/1001", headers=demo.headers()).status_code == 200
        assert http.get("/ui/fragments/tests/999999", headers=demo.headers()).status_code == 404
