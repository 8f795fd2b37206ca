"""docs/siem.md stays in step with the incidents: its ingest pipeline parses and reads only
fields an incident has, and every `unmapped.` field its table names is one an incident has."""

from __future__ import annotations

import json
import re

import yaml

from gateway.incidents import model
from tests.gateway.conftest import REPO
from tests.incidents.conftest import Finding

DOC = (REPO / "docs" / "siem.md").read_text()
T0 = 1_700_000_000.0


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def incident() -> dict[str, object]:
    i = model.build(
        Finding(), incident_id="inc-1", now=T0, client_ip="10.0.0.9", path="/x", request_id="r"
    )
    i = model.with_action(i, "principal", "alice", "open", T0 + 60, T0)
    return model.escalate(i, T0 + 7200)


def has(record: object, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(record, dict) or part not in record:
            return False
        record = record[part]
    return True


def test_the_ingest_pipeline_parses_and_reads_fields_incidents_have() -> None:
    [pipeline] = [json.loads(b) for b in blocks("json") if '"processors"' in b]
    processors = pipeline["processors"]
    assert list(processors[0]) == ["script"] and "unmapped.remove('ecs')" in json.dumps(
        processors[0]
    )
    i = incident()
    lifted = {**i, **i["unmapped"]["ecs"]}  # what the script makes of it
    for processor in processors:
        body = next(iter(processor.values()))
        for name in re.findall(r"\{\{\{([a-z_.]+)\}\}\}", json.dumps(body)):
            assert name.startswith("_ingest") or has(lifted, name), name
        if "field" in body and next(iter(processor)) != "set":
            assert has(lifted, body["field"]), body["field"]
    assert has(lifted, "ecs.version") and has(lifted, "event.kind") and has(lifted, "user.id")


def test_the_filebeat_sample_is_yaml_with_the_pipeline() -> None:
    [filebeat] = [yaml.safe_load(b) for b in blocks("yaml")]
    [source] = filebeat["filebeat.inputs"]
    assert source["pipeline"] == "datagate-incidents"
    assert source["parsers"] == [{"ndjson": {"target": "", "add_error_key": True}}]


def test_every_unmapped_field_the_doc_names_is_in_an_incident() -> None:
    named = set(re.findall(r"^\| `([a-z_]+)`", DOC, flags=re.M))
    i = incident()
    unmapped = {"dedup_key", "breaker", "ecs", "escalation", "stored"}
    assert unmapped <= named, "the table lists the unmapped fields"
    assert (unmapped - {"stored"}) <= set(i["unmapped"]), "stored only appears during outages"
