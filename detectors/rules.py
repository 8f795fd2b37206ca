"""Hard rules that work from the first request: thresholds and severities from DetectionConfig."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from detectors.calendar import LocalTime
from detectors.config import DetectionConfig
from detectors.detection import Detection, Evidence, Scope, severity_score
from detectors.events import AccessEvent
from detectors.features import PrincipalState
from detectors.windows import BYTES, COUNT, RECORDS, S401, S403, S404, SEQ, Windows

__all__ = ["Entity", "Rules"]

Numbers = dict[str, float]


class Entity(Protocol):
    """A principal, client IP or token being watched."""

    windows: Windows | None
    samples: object  # a deque of recent request ids
    fired: dict[str, Detection]


def _summary(windows: Windows) -> Numbers:
    m, f, h = windows.totals()
    return {
        "requests_1m": m[COUNT],
        "requests_5m": f[COUNT],
        "requests_1h": h[COUNT],
        "sequential_5m": f[SEQ],
        "status_401_5m": f[S401],
        "status_403_5m": f[S403],
        "status_404_5m": f[S404],
        "records_1h": h[RECORDS],
        "bytes_1h": h[BYTES],
    }


class Rules:
    """Evaluates every enabled rule against the current window totals; O(1) per call.

    While a rule keeps firing for the same entity, its Detection is reused for
    `evidence_refresh_s` seconds: the breaker and incidents deduplicate on it anyway, and a
    burst of thousands of requests then costs no evidence building per request.
    """

    __slots__ = ("_gates", "config", "refresh")

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config
        self.refresh = float(config.evidence_refresh_s)
        hf, en = config.high_frequency, config.enumeration
        # The lowest counts at which a window rule can fire (disabled rules never do).
        off = 1 << 62
        self._gates = (
            hf.per_minute if hf.enabled else off,
            hf.per_5min if hf.enabled else off,
            hf.per_hour if hf.enabled else off,
            en.sequential_5min if en.enabled else off,
            en.sequential_hour if en.enabled else off,
            en.not_found_5min if en.enabled else off,
        )

    def quiet(self, entity: Entity) -> bool:
        """True when no frequency or enumeration threshold is reached: the common case,
        answered without calling the rules."""
        assert entity.windows is not None
        m, f, h = entity.windows.totals()
        per_minute, per_5min, per_hour, seq_5min, seq_hour, not_found = self._gates
        return (
            m[COUNT] < per_minute
            and f[COUNT] < per_5min
            and h[COUNT] < per_hour
            and f[SEQ] < seq_5min
            and h[SEQ] < seq_hour
            and f[S404] < not_found
        )

    def _fire(
        self,
        out: list[Detection],
        entity: Entity,
        name: str,
        rule: str,
        severity: int,
        scope: Scope,
        key: str,
        event: AccessEvent,
        explain: Callable[[], tuple[str, Numbers, Numbers]],
    ) -> None:
        """Add the detection `name` of `entity`: the recent one, or a new one with evidence."""
        recent = entity.fired.get(name)
        if recent is not None and 0 <= event.ts - recent.ts < self.refresh:
            out.append(recent)
            return
        title, observed, baseline = explain()
        detection = Detection(
            rule=rule,
            severity=severity,
            scope=scope,
            key=key,
            principal=event.principal,
            department=event.department,
            dataset=event.dataset,
            title=title,
            score=severity_score(severity),
            ts=event.ts,
            evidence=Evidence(
                observed,
                baseline,
                _summary(entity.windows) if entity.windows is not None else {},
                tuple(entity.samples),  # type: ignore[call-overload]
            ),
        )
        entity.fired[name] = detection
        out.append(detection)

    def frequency(
        self, scope: Scope, key: str, entity: Entity, event: AccessEvent, out: list[Detection]
    ) -> None:
        rule = self.config.high_frequency
        if not rule.enabled:
            return
        assert entity.windows is not None
        m, f, h = entity.windows.totals()
        if m[COUNT] < rule.per_minute and f[COUNT] < rule.per_5min and h[COUNT] < rule.per_hour:
            return
        for count, limit, span in (
            (m[COUNT], rule.per_minute, "1m"),
            (f[COUNT], rule.per_5min, "5m"),
            (h[COUNT], rule.per_hour, "1h"),
        ):
            if count >= limit:
                self._fire(
                    out,
                    entity,
                    "high_frequency",
                    "high_frequency",
                    rule.severity,
                    scope,
                    key,
                    event,
                    lambda count=count, limit=limit, span=span: (
                        f"high request frequency for {scope} {key}: {count} requests in {span}",
                        {f"requests_{span}": count},
                        {f"limit_{span}": limit},
                    ),
                )
                return

    def enumeration(
        self, scope: Scope, key: str, entity: Entity, event: AccessEvent, out: list[Detection]
    ) -> None:
        rule = self.config.enumeration
        if not rule.enabled:
            return
        assert entity.windows is not None
        _, f, h = entity.windows.totals()
        if (
            f[SEQ] < rule.sequential_5min
            and h[SEQ] < rule.sequential_hour
            and f[S404] < rule.not_found_5min
        ):
            return
        if (f[SEQ] >= rule.sequential_5min and f[SEQ] >= rule.sequential_ratio * f[COUNT]) or (
            h[SEQ] >= rule.sequential_hour and h[SEQ] >= rule.sequential_ratio * h[COUNT]
        ):
            self._fire(
                out,
                entity,
                "enumeration",
                "enumeration",
                rule.severity,
                scope,
                key,
                event,
                lambda: (
                    f"sequential record ids walked by {scope} {key}: "
                    f"{f[SEQ]} of {f[COUNT]} requests in 5m, {h[SEQ]} in 1h",
                    {"sequential_5m": f[SEQ], "sequential_1h": h[SEQ]},
                    {"limit_5m": rule.sequential_5min, "limit_1h": rule.sequential_hour},
                ),
            )
        elif f[S404] >= rule.not_found_5min and f[S404] >= rule.not_found_ratio * f[COUNT]:
            self._fire(
                out,
                entity,
                "enumeration",
                "enumeration",
                rule.severity,
                scope,
                key,
                event,
                lambda: (
                    f"many lookups of missing records by {scope} {key}: "
                    f"{f[S404]} of {f[COUNT]} requests got 404 in 5m",
                    {"status_404_5m": f[S404]},
                    {"limit_5m": rule.not_found_5min},
                ),
            )

    def bulk(
        self, state: PrincipalState, event: AccessEvent, out: list[Detection], response: bool
    ) -> None:
        rule = self.config.bulk_export
        principal = event.principal
        if not rule.enabled or principal is None:
            return
        _, _, h = state.windows.totals()
        if response and event.records_out >= rule.records_per_response:
            self._fire(
                out,
                state,
                "bulk_export",
                "bulk_export",
                rule.severity,
                "principal",
                principal,
                event,
                lambda: (
                    f"bulk export by {principal}: {event.records_out} records in one response",
                    {"records_out": event.records_out},
                    {"limit": rule.records_per_response},
                ),
            )
        elif h[RECORDS] >= rule.records_per_hour or h[BYTES] >= rule.bytes_per_hour:
            self._fire(
                out,
                state,
                "bulk_export",
                "bulk_export",
                rule.severity,
                "principal",
                principal,
                event,
                lambda: (
                    f"bulk export by {principal}: {h[RECORDS]} records, {h[BYTES]} bytes in 1h",
                    {"records_1h": h[RECORDS], "bytes_1h": h[BYTES]},
                    {
                        "limit_records_1h": rule.records_per_hour,
                        "limit_bytes_1h": rule.bytes_per_hour,
                    },
                ),
            )

    def auth_failures(self, ip: Entity, event: AccessEvent, out: list[Detection]) -> None:
        rule = self.config.auth_failures
        if not rule.enabled:
            return
        assert ip.windows is not None
        m, f, _ = ip.windows.totals()
        if m[S401] >= rule.per_minute or f[S401] >= rule.per_5min:
            self._fire(
                out,
                ip,
                "auth_failures",
                "auth_failures",
                rule.severity,
                "client_ip",
                event.client_ip,
                event,
                lambda: (
                    f"failed authentication burst from {event.client_ip}: "
                    f"{m[S401]} in 1m, {f[S401]} in 5m",
                    {"status_401_1m": m[S401], "status_401_5m": f[S401]},
                    {"limit_1m": rule.per_minute, "limit_5m": rule.per_5min},
                ),
            )

    def principal_rules(
        self,
        state: PrincipalState,
        event: AccessEvent,
        local: LocalTime,
        new_ip: bool,
        new_agent: bool,
        out: list[Detection],
    ) -> None:
        """Rules over one principal's behaviour, checked when a request is observed."""
        principal = event.principal
        assert principal is not None
        if not self.quiet(state):
            self.frequency("principal", principal, state, event, out)
            self.enumeration("principal", principal, state, event, out)
        self.bulk(state, event, out, response=False)
        _, _, h = state.windows.totals()
        config = self.config
        above = config.above_baseline
        if above.enabled and h[COUNT] >= above.min_per_hour:
            expected = state.expected
            if h[COUNT] >= above.ratio * expected:
                self._fire(
                    out,
                    state,
                    "above_baseline",
                    "above_baseline",
                    above.severity,
                    "principal",
                    principal,
                    event,
                    lambda: (
                        f"{principal} far above its usual rate: {h[COUNT]} requests in 1h, "
                        f"usually {expected:.1f}",
                        {"requests_1h": h[COUNT]},
                        {"expected_per_hour": round(expected, 2)},
                    ),
                )
        off = config.off_hours
        if off.enabled and not local.working and event.level >= off.min_level:
            if h[COUNT] >= off.bulk_requests_per_hour or h[RECORDS] >= off.bulk_records_per_hour:
                name, severity, what = "off_hours:bulk", off.bulk_severity, "bulk access"
            elif new_ip and (local.night or (new_agent and not local.daytime)):
                name, severity = "off_hours:unfamiliar", off.unfamiliar_severity
                what = (
                    "night access from a new IP"
                    if local.night
                    else "access from a new IP and client"
                )
            elif new_ip:
                name, severity, what = "off_hours:new_ip", off.severity, "access from a new IP"
            else:
                name, severity, what = "off_hours", off.severity, "access"
            self._fire(
                out,
                state,
                name,
                "off_hours",
                severity,
                "principal",
                principal,
                event,
                lambda: (
                    f"off-hours {what} by {principal} to level-{event.level} data "
                    f"({event.client_ip})",
                    {"requests_1h": h[COUNT], "records_1h": h[RECORDS], "local_hour": local.hour},
                    {
                        "hour_rarity": round(state.baseline.rarity(local.slot), 3),
                        "limit_requests_1h": off.bulk_requests_per_hour,
                        "limit_records_1h": off.bulk_records_per_hour,
                    },
                ),
            )

    def token_spread(
        self, token: Entity, ips: int, event: AccessEvent, out: list[Detection]
    ) -> None:
        rule = self.config.token_spread
        token_id = event.token_id
        if rule.enabled and token_id is not None and ips > rule.max_ips_per_hour:
            self._fire(
                out,
                token,
                "token_spread",
                "token_spread",
                rule.severity,
                "token",
                token_id,
                event,
                lambda: (
                    f"token {token_id} used from {ips} IPs in 1h",
                    {"ips_1h": ips},
                    {"limit": rule.max_ips_per_hour},
                ),
            )
