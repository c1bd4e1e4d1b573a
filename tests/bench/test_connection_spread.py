"""``bench.measure``'s even spread of wrk's connections over a server's processes.

``examtrail serve --workers 2`` shares one listening socket between its processes and wrk
opens all its connections at once: one process often took most or all of them, and a /healthz
floor measured so was the rate of one process (bench/notes.md, issue #15, sixth pass). A run
whose busiest process holds more than 60% of the connections (1.2 times its fair share) is
stopped and started again, up to a bound; the kept run records its spread and tries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import measure, report

LISTENING = (
    '0      2048   127.0.0.1:11108 0.0.0.0:* users:(("python",pid=9121,fd=3),'
    '("python",pid=9120,fd=3),("python",pid=9117,fd=3))\n'
)
ESTABLISHED = (
    '0      0      127.0.0.1:11108 127.0.0.1:40112 users:(("python",pid=9120,fd=21))\n'
    '0      0      127.0.0.1:11108 127.0.0.1:40114 users:(("python",pid=9121,fd=22))\n'
    '0      0      127.0.0.1:11108 127.0.0.1:40116 users:(("python",pid=9120,fd=23))\n'
    "0      0      127.0.0.1:11108 127.0.0.1:40118\n"  # a socket no process of ours holds
)


def test_ss_lines_count_per_process() -> None:
    assert measure.parse_ss_pids(ESTABLISHED) == {9120: 2, 9121: 1}
    assert measure.parse_ss_pids(LISTENING) == {9117: 1, 9120: 1, 9121: 1}
    assert measure.parse_ss_pids("") == {}


def test_the_supervisor_holding_the_socket_is_not_a_serving_process() -> None:
    parents = {9117: 1, 9120: 9117, 9121: 9117}
    listeners = measure.parse_ss_pids(LISTENING)
    assert measure.serving_pids(listeners, parents.get) == [9120, 9121]
    assert measure.serving_pids([4000], {4000: 1}.get) == [4000]  # one process serves alone


def test_spread_counts_an_idle_process_as_zero_busiest_first() -> None:
    assert measure.spread_of([9120, 9121], {9121: 50}) == [50, 0]
    assert measure.spread_of([9120, 9121], measure.parse_ss_pids(ESTABLISHED)) == [2, 1]


@pytest.mark.parametrize(
    ("spread", "even"),
    [
        ([25, 25], True),
        ([30, 20], True),  # 60%: the limit
        ([31, 19], False),
        ([50, 0], False),
        ([48, 2], False),
        ([60, 40], True),
        ([61, 39], False),
        ([14, 12, 11, 13], True),  # 1.12 x a fair share of 12.5
        ([16, 12, 11, 11], False),  # 1.28 x
        ([50], True),  # one process: nothing to balance
        ([0, 0], True),  # nothing connected: nothing to judge
    ],
)
def test_evenness_rule(spread: list[int], even: bool) -> None:
    assert measure.is_even(spread) is even


class FakeWrk:
    """A started run whose spread is given; records whether it was stopped or finished."""

    def __init__(self, spread: list[int] | None, log: list[str], rate: float) -> None:
        self._spread = spread
        self.log = log
        self.rate = rate

    def spread(self) -> list[int] | None:
        return self._spread

    def abort(self) -> dict[str, Any]:
        self.log.append("abort")
        return {"requests": 100, "non_2xx": 1}

    def finish(self) -> dict[str, Any]:
        self.log.append("finish")
        return {"requests_per_s": self.rate, "requests": 1000, "non_2xx": 0}


def _starts(spreads: list[list[int] | None], log: list[str]) -> Any:
    queue = list(spreads)

    def start(attempt: int) -> FakeWrk:
        log.append(f"start {attempt}")
        return FakeWrk(queue.pop(0), log, rate=float(len(log)))

    return start


def test_uneven_runs_are_stopped_and_the_first_even_one_is_kept() -> None:
    log: list[str] = []
    result = measure.until_even(_starts([[50, 0], [48, 2], [27, 23], [25, 25]], log), tries=5)
    assert log == ["start 1", "abort", "start 2", "abort", "start 3", "finish"]
    assert result["connections_per_process"] == [27, 23]
    assert result["tries"] == 3
    assert result["even"] is True
    assert [run["connections_per_process"] for run in result["uneven_runs"]] == [[50, 0], [48, 2]]
    # The stopped runs' answers count among what was stored.
    assert measure.answered_2xx(result) == 1000 + 2 * 99


def test_an_even_first_run_takes_one_try() -> None:
    log: list[str] = []
    result = measure.until_even(_starts([[26, 24]], log), tries=5)
    assert log == ["start 1", "finish"]
    assert result["tries"] == 1 and "uneven_runs" not in result
    assert measure.answered_2xx(result) == 1000


def test_after_the_bound_the_last_run_is_kept_and_marked_uneven() -> None:
    log: list[str] = []
    result = measure.until_even(_starts([[50, 0], [40, 10], [45, 5]], log), tries=3)
    assert log == ["start 1", "abort", "start 2", "abort", "start 3", "finish"]
    assert result["connections_per_process"] == [45, 5]
    assert result["tries"] == 3 and result["even"] is False
    assert measure.spread_text(result) == "45/5, uneven after 3 tries"


def test_one_process_runs_once_and_records_no_spread() -> None:
    log: list[str] = []
    result = measure.until_even(_starts([None], log), tries=5)
    assert log == ["start 1", "finish"]
    assert "connections_per_process" not in result and "tries" not in result
    assert measure.spread_text(result) == ""


def test_spread_text() -> None:
    assert measure.spread_text({"connections_per_process": [27, 23], "tries": 1, "even": True}) == "27/23"
    found = {"connections_per_process": [26, 24], "tries": 4, "even": True}
    assert measure.spread_text(found) == "26/24 after 4 tries"


def test_healthz_floors_show_the_spreads_only_where_measured() -> None:
    old = {
        "result": {"requests_per_s": 900.0},
        "healthz_before": {"requests_per_s": 2500.0},
        "healthz_after": {"requests_per_s": 6000.0},
    }
    assert measure.healthz_floors(old) == "/healthz 2,500 before, 6,000 after"
    new = {
        "result": {"requests_per_s": 900.0, "connections_per_process": [27, 23], "tries": 2, "even": True},
        "healthz_before": {"requests_per_s": 5800.0, "connections_per_process": [25, 25], "tries": 1},
        "healthz_after": {"requests_per_s": 6000.0, "connections_per_process": [30, 20], "tries": 1},
    }
    assert measure.healthz_floors(new) == (
        "/healthz 5,800 before, 6,000 after (connections per process: 27/23 after 2 tries; 25/25; 30/20)"
    )


_SPREAD_KEYS = {"connections_per_process", "tries", "even", "uneven_runs"}


def _without_spreads(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_spreads(v) for k, v in value.items() if k not in _SPREAD_KEYS}
    if isinstance(value, list):
        return [_without_spreads(v) for v in value]
    return value


def _saved_results() -> dict[str, Any]:
    """The last run's results as a run before the spread was counted saved them (and as a
    single-process server's are): no spread anywhere."""
    saved = json.loads((Path(__file__).parents[2] / "bench" / "results.json").read_text())
    return _without_spreads(saved)  # type: ignore[no-any-return]


def test_results_without_a_spread_render_as_before() -> None:
    text = report.render_markdown(_saved_results())
    assert "connections per process" not in text
    assert report.SPREAD_NOTE not in text


def test_the_spread_is_rendered_beside_the_route_and_the_healthz_floors() -> None:
    results = _saved_results()
    row = results["framework_pg"]["rows"][0]
    before = report.render_markdown(_saved_results())
    row["result"].update({"connections_per_process": [27, 23], "tries": 3, "even": True})
    row["healthz_before"].update({"connections_per_process": [25, 25], "tries": 1, "even": True})
    row["healthz_after"].update({"connections_per_process": [30, 20], "tries": 2, "even": True})
    text = report.render_markdown(results)
    assert report.SPREAD_NOTE in text
    line = next(line for line in text.splitlines() if line.startswith(f"| {row['route']}"))
    assert f"| {row['connections']} (27/23 after 3 tries) |" in line
    assert "after; connections per process 25/25, 30/20 after 2 tries) |" in line
    # The embedded deployment's section (one process, no spread) is unchanged.
    embedded = "## Framework-bound routes: embedded"
    assert (
        text[text.index(embedded) :].split("## Targets")[0]
        == before[before.index(embedded) :].split("## Targets")[0]
    )


def test_each_try_runs_its_own_script_so_single_events_are_not_sent_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A run started again after an uneven one must post new eventIds, not the stopped run's."""
    scripts: list[str] = []

    def fake_evenly(command_for: Any, url: str, connections: int, cpu: Any = None) -> dict[str, Any]:
        for attempt in (1, 2):
            command = command_for(attempt)
            assert command[-1] == url
            scripts.append(Path(command[command.index("-s") + 1]).read_text())
        return {"requests_per_s": 1.0}

    monkeypatch.setattr("bench.measure.shutil.which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(measure, "run_wrk_evenly", fake_evenly)
    script = measure.single_event_script(7, [1, 2], "run")
    measure.wrk_run("http://127.0.0.1:9/v1/test/7/candidates/", 100, 1, None, script, tmp_path)
    assert scripts[0].startswith("wrk_try = 1\n") and scripts[1].startswith("wrk_try = 2\n")
    assert scripts[0].removeprefix("wrk_try = 1\n") == scripts[1].removeprefix("wrk_try = 2\n") == script
    assert 'local tag = "run-" .. tostring(wrk_try or 1)' in script
    assert list(tmp_path.iterdir()) == []  # the scripts are removed
