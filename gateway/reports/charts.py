"""The reports drawn with matplotlib into a PNG: the same figures as the dashboard's charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "--chart needs matplotlib: pip install 'datagate[reports]' (or matplotlib)"
        ) from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def usage_chart(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (calls_ax, util_ax) = plt.subplots(1, 2, figsize=(12, 5))
    datasets = [d["dataset"] for d in report["datasets"]]
    departments = sorted({r["department"] for r in report["rows"]})
    bottom = [0] * len(datasets)
    for department in departments:
        heights = [
            sum(
                r["calls"]
                for r in report["rows"]
                if r["dataset"] == d and r["department"] == department
            )
            for d in datasets
        ]
        calls_ax.bar(datasets, heights, bottom=bottom, label=department)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    calls_ax.set_title(
        f"Calls per dataset by consumer department\n{report['from'][:10]} to {report['to'][:10]}"
    )
    calls_ax.set_ylabel("calls")
    if departments:
        calls_ax.legend(fontsize="small")
    calls_ax.tick_params(axis="x", rotation=30)
    shares = [d["utilisation"] for d in report["datasets"]]
    util_ax.barh(datasets, shares, color="#2a7ab0")
    util_ax.set_xlim(0, 1)
    util_ax.set_title("Utilisation: share of catalogued consumers served")
    for y, share in enumerate(shares):
        util_ax.text(min(share + 0.02, 0.9), y, f"{share:.0%}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def incidents_chart(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    fig, (count_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 5))
    days = [p["day"] for p in report["periods"]]
    severities = sorted({s for p in report["periods"] for s in p["by_severity"]})
    bottom = [0] * len(days)
    for severity in severities:
        heights = [p["by_severity"].get(severity, 0) for p in report["periods"]]
        count_ax.bar(days, heights, bottom=bottom, label=f"severity {severity}")
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    total = report["total"]
    share = total["share_within_deadline"]
    count_ax.set_title(
        "Incidents per day by severity; handled within the deadline: "
        + ("-" if share is None else f"{share:.0%}")
    )
    if severities:
        count_ax.legend(fontsize="small")
    count_ax.tick_params(axis="x", rotation=30)
    for key, label in (
        ("minutes_to_acknowledge", "acknowledge"),
        ("minutes_to_resolve", "resolve"),
    ):
        for stat, style in (("median", "-o"), ("p90", "--")):
            values = [p[key][stat] for p in report["periods"]]
            time_ax.plot(
                days,
                [float("nan") if v is None else v for v in values],
                style,
                label=f"{label} {stat}",
            )
    time_ax.axhline(120, color="red", linewidth=1, label="2-hour deadline")
    time_ax.set_ylabel("minutes")
    time_ax.set_title("Time to acknowledge and to resolve")
    time_ax.legend(fontsize="small")
    time_ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def quality_chart(report: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    rows = report["fields"]
    labels = [f"{r['dataset']}.{r['field']}" for r in rows]
    fig, ax = plt.subplots(figsize=(12, max(3, 0.5 * len(rows) + 1.5)))
    y = range(len(rows))
    empty = [r["empty_or_missing_share"] or 0 for r in rows]
    invalid = [r["invalid_share"] or 0 for r in rows]
    ax.barh([i - 0.2 for i in y], empty, height=0.4, label="empty or missing")
    ax.barh([i + 0.2 for i in y], invalid, height=0.4, label="failing checksum/date/format")
    ax.set_yticks(list(y), labels)
    ax.set_xlim(0, 1)
    ax.set_title("Data quality per field (share of values)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
