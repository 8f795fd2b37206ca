"""Access-request events for other systems: the incident sinks' webhook and Redis stream."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.access.config import AccessConfig
from gateway.incidents.config import IncidentsConfig
from gateway.incidents.sinks import Sink, Sinks, StreamSink, WebhookSink
from gateway.state import open_backend
from gateway.state.base import StateBackend

# Fields of a request an event carries (never the history: receivers notify people).
EVENT_FIELDS = (
    "id",
    "state",
    "requester",
    "department",
    "dataset",
    "owner",
    "level",
    "actions",
    "fields",
    "purpose",
    "duration",
    "decide_by",
    "decided_by",
    "grant_id",
    "grant_expires_at",
)


def event_sinks(incidents: IncidentsConfig, access: AccessConfig, backend: StateBackend) -> Sinks:
    """The incident sinks' transports, minus the incident file (SIEMs read that as OCSF
    findings only): the same webhook with a spool of its own, and the stream `access.stream`
    on the same Redis."""
    sinks: list[Sink] = []
    if incidents.stream is not None:
        stream = dataclasses.replace(incidents.stream, stream=access.stream)
        if stream.url is not None:
            sinks.append(StreamSink(stream, open_backend(stream.url), owned=True))
        else:
            sinks.append(StreamSink(stream, backend))
    if incidents.webhook is not None:
        spool = incidents.webhook.spool.parent / "access-spool"
        sinks.append(WebhookSink(dataclasses.replace(incidents.webhook, spool=spool)))
    return Sinks(sinks)


def event(step: str, request: dict[str, Any], by: str, at: str, note: str) -> dict[str, Any]:
    """One step of a request as receivers get it: `type`, `step`, who, when, the request."""
    return {
        "type": "access_request",
        "step": step,
        "by": by,
        "at": at,
        "note": note,
        **{k: request.get(k) for k in EVENT_FIELDS},
    }
