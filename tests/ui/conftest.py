"""A real ``examtrail serve`` with the demo data, and Debian's Chromium driven by Playwright.

Tests using these fixtures run in the SQLite pass only (the server they start is the embedded default;
the PostgreSQL pass would only repeat them). Screenshots go to ``test-artifacts/ui/``
(``EXAMTRAIL_TEST_ARTIFACTS`` overrides the folder).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import bearer, get_token
from tests.support.processes import ExamtrailProcess, run_cli

CHROMIUM = os.environ.get("EXAMTRAIL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("EXAMTRAIL_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "ui"
AXE = Path(__file__).with_name("axe.min.js")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if here in Path(str(item.fspath)).parents and uses & {"demo", "browser", "page"}:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
            if os.environ.get("EXAMTRAIL_TEST_DB", "sqlite") == "postgresql":
                item.add_marker(pytest.mark.skip(reason="browser tests run in the SQLite pass"))
            elif not Path(CHROMIUM).exists() and not os.environ.get("CI"):
                item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} missing: apt-get install -y chromium"))


@dataclass(frozen=True, slots=True)
class Demo:
    server: ExamtrailProcess
    env: dict[str, str]
    client_id: str
    api_key: str
    test_id: int

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30)

    def headers(self) -> dict[str, str]:
        with self.http() as http:
            return bearer(get_token(http, self.client_id, self.api_key))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("ui-server")
    env = {"EXAMTRAIL_DATA_DIR": str(data / "data"), "EXAMTRAIL_SWEEP_INTERVAL_SECONDS": "0.5"}
    for args in (["db", "upgrade"], ["demo"]):
        done = run_cli(args, env)
        assert done.returncode == 0, done.stdout + done.stderr
    saved = json.loads((data / "data" / "demo-client.json").read_text())
    with ExamtrailProcess.server(env, data / "logs") as server:
        yield Demo(server, env, saved["clientId"], saved["apiKey"], saved["testId"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, demo: Demo) -> Iterator[Any]:
    # A viewer two hours east of UTC: local times differ from the UTC ones.
    context = browser.new_context(
        base_url=demo.base_url,
        viewport={"width": 1280, "height": 900},
        timezone_id="Europe/Oslo",
        locale="en-GB",
        accept_downloads=True,
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.console_problems = problems
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical violations found by axe-core (vendored, run inside the page)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: not an inline script, so the page's CSP
        # needs no exception for it.
        page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.html)})); }"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
