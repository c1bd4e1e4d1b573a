"""The review pages' server side without a browser: fragments, tenancy, escaping, paging."""

from __future__ import annotations

import html as html_text
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from examtrail.audit.models import AuditEntry
from examtrail.ingest.review import Gap, network_gaps
from examtrail.runtime import Runtime
from tests.support.api import fetch, seed_test

DASH = "\N{EN DASH}"


def flag(event_id: str, at: str, severity: str, comment: str = "x") -> dict[str, Any]:
    return {
        "eventId": event_id,
        "event": "flag",
        "timeStamp": at,
        "userId": 9,
        "flaggingInfo": {"flagType": "t", "comment": comment, "severityLevel": severity},
    }


def test_network_gaps_pair_lost_with_restored() -> None:
    events = [
        ("network_lost", 1000),
        ("network_lost", 1500),  # still down: same gap
        ("idle_warning", 1700),
        ("network_restored", 4000),
        ("network_restored", 4100),  # nothing open
        ("network_lost", 9000),
    ]
    assert network_gaps(events) == [Gap(1000, 4000), Gap(9000, None)]
    assert Gap(1000, 4000).duration_ms == 3000


def test_test_page_pages_filters_and_sorts(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=9, candidates=120, events_per_candidate=2)
    path = "/v1/test/9/candidates/{}/events"
    assert http.post(path.format(150), json=flag("f1", "2026-06-01T10:00:00Z", "critical"), headers=headers)
    assert http.post(path.format(151), json=flag("f2", "2026-06-01T10:00:00Z", "low"), headers=headers)
    assert http.post(path.format(151), json=flag("f3", "2026-06-01T10:01:00Z", "low"), headers=headers)

    first = http.get("/ui/fragments/tests/9", headers=headers)
    assert first.status_code == 200
    assert first.text.count('<tr>\n      <td><a href="/ui/tests/9/candidates/') == 50
    assert f"Candidates 1{DASH}50 of 120" in first.text
    assert 'href="/ui/tests/9?offset=50" rel="next"' in first.text
    last = http.get("/ui/fragments/tests/9", params={"offset": 100}, headers=headers).text
    assert f"Candidates 101{DASH}120 of 120" in last
    assert 'rel="next"' not in last

    critical = http.get("/ui/fragments/tests/9", params={"severity": "critical"}, headers=headers).text
    assert f"Candidates 1{DASH}1 of 1" in critical
    assert ">150</a>" in critical
    flagged = http.get("/ui/fragments/tests/9", params={"flagged": "1"}, headers=headers).text
    assert f"Candidates 1{DASH}2 of 2" in flagged
    by_flags = http.get(
        "/ui/fragments/tests/9", params={"sort": "flags", "dir": "desc"}, headers=headers
    ).text
    assert by_flags.index(">151</a>") < by_flags.index(">150</a>") < by_flags.index(">100</a>")
    by_name = http.get("/ui/fragments/tests/9", params={"candidate": "cand-11"}, headers=headers).text
    assert "of 11" in by_name  # cand-11, cand-110 … cand-119


def test_candidate_search_and_severity_filter_match_alike_on_both_databases(
    http: TestClient, headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=9, candidates=3, events_per_candidate=0)
    people = [{"userId": 100, "candidateId": "ÅSE-Ødegård"}, {"userId": 101, "candidateId": "åse-ødegård"}]
    assert http.put("/v1/test/9/candidates", json=people, headers=headers).status_code == 200
    path = "/v1/test/9/candidates/{}/events"
    assert http.post(path.format(101), json=flag("f1", "2026-06-01T10:00:00Z", "High"), headers=headers)
    assert http.post(path.format(102), json=flag("f2", "2026-06-01T10:00:00Z", "high"), headers=headers)

    def listed(**params: str) -> str:
        response = http.get("/ui/fragments/tests/9", params=params, headers=headers)
        assert response.status_code == 200
        text: str = response.text
        return text

    # Every letter's case is ignored in the search (SQLite's lower() folded ASCII only).
    for query in ("åse-ødegård", "ÅSE-ØDEGÅRD", "Ødegård"):
        found = listed(candidate=query)
        assert f"Candidates 1{DASH}2 of 2" in found and ">100</a>" in found and ">101</a>" in found
    # A severity is the value stored, letter case and all (SQLite's LIKE ignored ASCII case).
    high = listed(severity="high")
    assert f"Candidates 1{DASH}1 of 1" in high and ">102</a>" in high
    capital = listed(severity="High")
    assert f"Candidates 1{DASH}1 of 1" in capital and ">101</a>" in capital


def test_candidate_search_folds_alike_and_takes_any_int64_user_id(
    http: TestClient, headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=0)
    big = 2**63 - 1
    people = [{"userId": 101, "candidateId": "ΣΑΣ İSTANBUL"}, {"userId": big, "candidateId": "max"}]
    assert http.put("/v1/test/9/candidates", json=people, headers=headers).status_code == 200

    def listed(candidate: str) -> str:
        response = http.get("/ui/fragments/tests/9", params={"candidate": candidate}, headers=headers)
        assert response.status_code == 200
        text: str = response.text
        return text

    # Python lowers "ΣΑΣ" and "İ" otherwise than PostgreSQL: found on SQLite only, before.
    for query in ("ΣΑΣ", "İSTANBUL"):
        found = listed(query)
        assert f"Candidates 1{DASH}1 of 1" in found and ">101</a>" in found, query
    # A 19-digit user id (was: 18 digits at most), leading zeros too; past int64 it is text.
    for query in (str(big), "000" + str(big)):
        assert f">{big}</a>" in listed(query), query
    assert f"Candidates 1{DASH}" not in listed(str(big + 1))


def test_timeline_escapes_and_shows_gaps_and_files(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=0)
    events = [
        {"eventId": "a", "event": "network_lost", "timeStamp": "2026-06-01T09:00:00Z"},
        {"eventId": "b", "event": "<b>odd</b>", "timeStamp": "2026-06-01T09:00:10Z"},
        {"eventId": "c", "event": "network_restored", "timeStamp": "2026-06-01T09:01:30Z"},
        flag("d", "2026-06-01T09:02:00Z", "high", "<script>alert(1)</script>"),
    ]
    assert http.post("/v1/test/9/candidates/100/events", json=events, headers=headers).status_code == 201
    uploaded = http.put(
        "/v1/test/9/candidates/100/events/d/files/<img>.png",
        content=b"\x89PNG",
        headers={**headers, "Content-Type": "image/png"},
    )
    assert uploaded.status_code == 201, uploaded.text

    page = http.get("/ui/fragments/tests/9/candidates/100", headers=headers)
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>odd</b>" not in html
    assert "Network down 1 min 30 s" in html
    assert (
        html.index('class="gap"')
        < html.index('id="ev-a"')
        < html.index('id="ev-c"')
        < html.index('id="ev-d"')
    )
    assert "Severity: high" in html
    # The server's receipt time beside the claimed one (ingested just now, not 2026-06-01).
    received = re.findall(r'<span class="received">Received <time datetime="([^"]+)"', html)
    assert len(received) == 4
    assert all(at.startswith(datetime.now(UTC).strftime("%Y-%m-%d")) for at in received)
    assert "&lt;img&gt;.png" in html
    assert 'alt="Evidence file &lt;img&gt;.png"' in html
    assert "Content-Security-Policy" in page.headers or "content-security-policy" in page.headers
    only_flags = http.get(
        "/ui/fragments/tests/9/candidates/100", params={"flagged": "1"}, headers=headers
    ).text
    assert 'id="ev-d"' in only_flags
    assert 'id="ev-b"' not in only_flags
    assert "Network down" in only_flags


@pytest.mark.parametrize("c1", ["\x85", "\x9f"])
def test_file_names_with_c1_characters_get_working_links(
    http: TestClient, headers: dict[str, str], c1: str
) -> None:
    # Uploads accept C1 (U+0080-U+009F); the local store's links once refused to sign them (500).
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    name = f"a{c1}.png"
    uploaded = http.put(
        f"/v1/test/9/candidates/100/events/e-100-0/files/{quote(name)}",  # a%C2%85.png
        content=b"\x89PNG c1",
        headers={**headers, "Content-Type": "image/png"},
    )
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["fileName"] == name

    page = http.get("/ui/fragments/tests/9/candidates/100", headers=headers)
    assert page.status_code == 200, page.text
    links = re.findall(r'<a href="([^"]+)" target="_blank"', page.text)
    assert len(links) == 1
    got = fetch(http, html_text.unescape(links[0]))
    assert got.status_code == 200
    assert got.content == b"\x89PNG c1"


def test_other_tenants_and_missing_get_404(
    http: TestClient, headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    for url in ("/ui/fragments/tests/9", "/ui/fragments/tests/9/candidates/100"):
        assert http.get(url, headers=other_headers).status_code == 404
        assert http.get(url).status_code == 401
    assert http.get("/ui/fragments/tests/9/candidates/555", headers=headers).status_code == 404
    assert "Test 9" not in http.get("/ui/fragments/tests", headers=other_headers).text


def test_pages_are_shells_with_a_strict_policy(http: TestClient) -> None:
    page = http.get("/ui/tests/9/candidates/100?flagged=1")
    assert page.status_code == 200
    assert 'data-fragment="/ui/fragments/tests/9/candidates/100?flagged=1"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'none'" in policy
    # The form posted with scripts off: an explanation, and the key is not echoed back.
    posted = http.post("/ui/", data={"client_id": "et_x", "client_secret": "etk_secret-value"})
    assert posted.status_code == 400
    assert "needs JavaScript" in posted.text
    assert "etk_secret-value" not in posted.text
    assert http.get("/ui/static/ui.css").headers["content-type"].startswith("text/css")
    assert "/ui/" not in str(http.get("/openapi.json").json()["paths"])


def test_candidate_export_button_names_the_candidate(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=1)
    html = http.get("/ui/fragments/tests/9/candidates/100", headers=headers).text
    # ui.js orders the export with ?userId= of this button.
    assert 'data-export-test="9" data-export-user="100"' in html


def test_tests_list_pages_by_test_id(http: TestClient, headers: dict[str, str]) -> None:
    for test_id in range(1, 53):
        assert http.put(
            f"/v1/test/{test_id}", json={"title": f"Exam <{test_id}>"}, headers=headers
        ).is_success
    first = http.get("/ui/fragments/tests", headers=headers).text
    assert first.count('<td><a href="/ui/tests/') == 50
    assert "Exam &lt;1&gt;" in first
    assert 'href="/ui/tests?after=50" rel="next"' in first
    second = http.get("/ui/fragments/tests", params={"after": 50}, headers=headers).text
    assert second.count('<td><a href="/ui/tests/') == 2
    assert ">First page<" in second
    assert 'rel="next"' not in second


def test_flagged_takes_only_the_checkbox_values(http: TestClient, headers: dict[str, str]) -> None:
    seed_test(http, headers, test_id=9, candidates=2, events_per_candidate=1)
    path = "/v1/test/9/candidates/{}/events"
    assert http.post(path.format(100), json=flag("f1", "2026-06-01T10:00:00Z", "low"), headers=headers)
    test_page, timeline = "/ui/fragments/tests/9", "/ui/fragments/tests/9/candidates/100"

    def rows(value: str | None) -> int:
        params = {} if value is None else {"flagged": value}
        page = http.get(test_page, params=params, headers=headers)
        assert page.status_code == 200, page.text
        return str(page.text).count('<tr>\n      <td><a href="/ui/tests/9/candidates/')

    def events(value: str | None) -> int:
        params = {} if value is None else {"flagged": value}
        page = http.get(timeline, params=params, headers=headers)
        assert page.status_code == 200, page.text
        return str(page.text).count('<li class="event')

    # Unchecked (absent, or spelled out as off): every candidate and event.
    for off in (None, "", "0", "false"):
        assert rows(off) == 2, off
        assert events(off) == 2, off
    for on in ("1", "true"):
        assert rows(on) == 1, on
        assert events(on) == 1, on
    # Anything else is refused, as any other bad parameter is; never read as "flagged only".
    for bad in ("no", "2", "yes", "False", "on"):
        for url in (test_page, timeline):
            answer = http.get(url, params={"flagged": bad}, headers=headers)
            assert answer.status_code == 422, (url, bad, answer.text)
            assert answer.json()["error"] == "validation_error"
            assert answer.json()["details"][0]["field"] == "flagged"


def test_a_gap_that_never_ends_reads_not_restored_on_the_test_page(
    http: TestClient, headers: dict[str, str]
) -> None:
    seed_test(http, headers, test_id=9, candidates=3, events_per_candidate=0)
    lost = {"event": "network_lost"}
    restored = {"event": "network_restored"}
    sent = {
        100: [{**lost, "eventId": "a", "timeStamp": "2026-06-01T09:00:00Z"}],
        101: [
            {**lost, "eventId": "a", "timeStamp": "2026-06-01T09:00:00Z"},
            {**restored, "eventId": "b", "timeStamp": "2026-06-01T09:00:45Z"},
            {**lost, "eventId": "c", "timeStamp": "2026-06-01T09:10:00Z"},
        ],
        102: [
            {**lost, "eventId": "a", "timeStamp": "2026-06-01T09:00:00Z"},
            {**restored, "eventId": "b", "timeStamp": "2026-06-01T09:00:45Z"},
        ],
    }
    for user_id, events in sent.items():
        events = [{**event, "eventId": f"{user_id}-{event['eventId']}"} for event in events]
        posted = http.post(f"/v1/test/9/candidates/{user_id}/events", json=events, headers=headers)
        assert posted.status_code == 201, posted.text
    html = http.get("/ui/fragments/tests/9", headers=headers).text
    rows = html.split("<tbody>")[1].split("</tr>")[:-1]
    cells = {re.findall(r"<td>(.*?)</td>", row)[1]: re.findall(r"<td>(.*?)</td>", row)[-2] for row in rows}
    assert cells == {
        "cand-0": "not restored (1 gap)",
        "cand-1": "45 s, then not restored (2 gaps)",
        "cand-2": "45 s (1 gap)",
    }
    timeline = http.get("/ui/fragments/tests/9/candidates/100", headers=headers).text
    assert "not restored" in timeline


def test_evidence_links_of_a_timeline_are_audited(
    http: TestClient, headers: dict[str, str], runtime: Runtime
) -> None:
    seed_test(http, headers, test_id=9, candidates=1, events_per_candidate=0)
    events = [flag("d", "2026-06-01T09:02:00Z", "high"), flag("e", "2026-06-01T09:03:00Z", "low")]
    assert http.post("/v1/test/9/candidates/100/events", json=events, headers=headers).status_code == 201
    ids = []
    for event_id, name in (("d", "a.png"), ("e", "b.txt"), ("e", "c.txt")):
        uploaded = http.put(
            f"/v1/test/9/candidates/100/events/{event_id}/files/{name}", content=b"x", headers=headers
        )
        assert uploaded.status_code == 201, uploaded.text
        ids.append(uploaded.json()["contentItemId"])

    def issued() -> list[AuditEntry]:
        with runtime.sessions() as session:
            stmt = select(AuditEntry).where(AuditEntry.action == "attachment.link_issued")
            return list(session.scalars(stmt.order_by(AuditEntry.id)))

    page = http.get("/ui/fragments/tests/9/candidates/100", headers={**headers, "X-Request-ID": "ui-1"})
    assert page.status_code == 200
    [entry] = issued()
    assert (entry.object_type, entry.object_id, entry.test_id) == ("candidate", "100", 9)
    assert entry.request_id == "ui-1"
    assert entry.client_id is not None
    recorded = orjson.loads(entry.details or "{}")
    assert recorded["userId"] == 100
    assert recorded["attachmentIds"] == sorted(ids)
    assert recorded["expires"]
    # One entry per rendered timeline.
    http.get("/ui/fragments/tests/9/candidates/100", params={"flagged": "1"}, headers=headers)
    assert len(issued()) == 2
    # No file shown, no link, no entry.
    seed_test(http, headers, test_id=9, candidates=2, events_per_candidate=1)
    assert http.get("/ui/fragments/tests/9/candidates/101", headers=headers).status_code == 200
    assert len(issued()) == 2
