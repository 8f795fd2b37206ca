"""The incident-handling report from incidents built by the incident model with known times."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import orjson

from gateway.cli import main
from gateway.incidents import model
from gateway.reports.incidents import incident_report, latest
from tests.reports.conftest import DAY1

MIN = 60.0


@dataclasses.dataclass(frozen=True)
class Detection:
    rule: str
    severity: int
    principal: str | None = "p1"
    dataset: str | None = "register"
    title: str = "test"


def history() -> list[dict]:
    """Every change as a new line, as the file sink writes them. Day 1: five incidents;
    day 2: two. Minutes to acknowledge day 1: 10, 30, 50, 150 (late), one never (escalated)."""
    lines = []

    def raised(n: int, severity: int, at: float) -> dict:
        incident = model.build(Detection(f"rule{n}", severity), incident_id=f"i{n}", now=at)
        lines.append(incident)
        return incident

    def ack(incident: dict, after: float) -> dict:
        raised_at = model_time(incident)
        done = model.acknowledge(incident, "soc1", "", raised_at + after * MIN)
        lines.append(done)
        return done

    def resolve(incident: dict, after: float) -> dict:
        done = model.resolve(incident, "soc1", "fixed", model_time(incident) + after * MIN)
        lines.append(done)
        return done

    resolve(ack(raised(1, 3, DAY1), 10), 40)
    resolve(ack(raised(2, 4, DAY1 + 600), 30), 100)
    ack(raised(3, 4, DAY1 + 1200), 50)
    resolve(ack(raised(4, 5, DAY1 + 1800), 150), 200)
    late = raised(5, 3, DAY1 + 2400)
    lines.append(model.escalate(late, DAY1 + 2400 + 121 * MIN))
    day2 = DAY1 + 86400
    resolve(raised(6, 2, day2), 20)  # resolved at once: acknowledged then too
    raised(7, 3, day2 + 60)  # open, deadline not reached at "now"
    return lines


def model_time(incident: dict) -> float:
    return dt.datetime.fromisoformat(
        incident["unmapped"]["workflow"]["history"][0]["at"]
    ).timestamp()


NOW = DAY1 + 86400 + 600  # day 2, ten minutes after incident 7


def test_figures_per_day_and_in_total() -> None:
    report = incident_report(latest(orjson.dumps(i) for i in history()), DAY1 - 3600, NOW, NOW)
    day1, day2 = report["periods"]
    assert day1["day"] == "2026-12-01" and day2["day"] == "2026-12-02"
    assert day1["incidents"] == 5
    assert day1["by_severity"] == {"Critical": 1, "High": 2, "Medium": 2}
    assert day2["by_severity"] == {"Low": 1, "Medium": 1}
    assert day1["minutes_to_acknowledge"] == {"median": 40.0, "p90": 150.0}
    assert day1["minutes_to_resolve"] == {"median": 100.0, "p90": 200.0}
    assert (day1["handled_within_deadline"], day1["missed_deadline"]) == (3, 2)
    assert day1["share_within_deadline"] == 0.6
    assert day1["escalations"] == 1
    assert day1["resolved"] == 3
    # Day 2: one resolved in 20 minutes, one open before its deadline (not counted yet).
    assert (day2["handled_within_deadline"], day2["missed_deadline"]) == (1, 0)
    assert day2["share_within_deadline"] == 1.0
    total = report["total"]
    assert total["incidents"] == 7
    assert total["share_within_deadline"] == round(4 / 6, 4)
    assert total["minutes_to_acknowledge"] == {"median": 30.0, "p90": 150.0}


def test_the_period_filters_by_when_raised() -> None:
    report = incident_report(latest(orjson.dumps(i) for i in history()), DAY1 + 86000, NOW, NOW)
    assert report["total"]["incidents"] == 2


def test_the_cli_reads_the_file_sink(capsys, tmp_path: Path, config_file: Path) -> None:
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in history()))
    chart = tmp_path / "incidents.png"
    code = main(
        [
            "report",
            "incidents",
            "--incidents",
            str(path),
            "--from",
            "2026-12-01",
            "--to",
            "2026-12-03",
            "--format",
            "csv",
            "--chart",
            str(chart),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("day,incidents,by_severity,ack_median,ack_p90")
    assert lines[1].startswith("2026-12-01,5,")
    assert lines[-1].startswith("total,7,")
    assert chart.read_bytes()[:4] == b"\x89PNG"
