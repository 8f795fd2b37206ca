"""The online detector the gateway calls: O(1) observe/record per request, batched model scoring."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from detectors.calendar import Calendar
from detectors.detection import Assessment, Detection, Evidence
from detectors.events import AccessEvent
from detectors.features import (
    FEATURE_NAMES,
    Aggregate,
    IpState,
    Learning,
    PrincipalState,
    TokenState,
    feature_vector,
)
from detectors.model import DetectorModel, load_model
from detectors.profiles import Profile, group_key, prefix24
from detectors.rules import RULES, Rule, View

__all__ = ["Detector", "ModelResult", "load_configured_model"]

log = structlog.get_logger("datagate.detectors")

MAX_TRACKED = 100_000  # client IPs / tokens kept before idle ones are dropped
_IDLE = 86400.0


@dataclasses.dataclass(slots=True)
class ModelResult:
    """The model's verdict on one recorded event (its principal's smoothed score)."""

    event: AccessEvent
    raw: float  # this event's anomaly, 0..1, as scikit-learn would score it
    score: float  # the principal's calibrated, smoothed score: >= 0.5 is anomalous
    detection: Detection | None  # set when anomalous

    @property
    def anomalous(self) -> bool:
        return self.score >= 0.5


def load_configured_model(config: Any) -> DetectorModel | None:
    """The model named in the config; None (with a warning) when none is configured or found."""
    if config.model.path is None:
        log.warning("detection_model_missing", detail="no model configured: rules and priors only")
        return None
    path = Path(config.model.path)
    if not path.exists():
        log.warning("detection_model_missing", path=str(path), detail="rules and priors only")
        return None
    return load_model(path)


def _calibrated(smoothed: float, threshold: float) -> float:
    """Map a smoothed anomaly to 0..1 so that the calibrated threshold lands on 0.5."""
    if smoothed < threshold:
        return 0.5 * smoothed / threshold
    return min(1.0, 0.5 + 0.5 * (smoothed - threshold) / (1.0 - threshold))


class Detector:
    """Behaviour state for principals, addresses, ranges, tokens and departments, the rules,
    and the model queue.

    Per request: `observe(event)` before forwarding returns the detections to act on;
    `record(event, observed=...)` after the response adds the outcome and queues the event's
    feature vector for the model, scored in batches (`score_pending`, `run`, `start`/`stop`).
    `learn=True` (training) learns the history as the reference, without drift caps.
    """

    def __init__(
        self,
        config: Any,
        model: DetectorModel | None = None,
        *,
        on_result: Callable[[ModelResult], None] | None = None,
        learn: bool = False,
    ) -> None:
        self.model = model
        self.on_result = on_result
        self._learn = learn
        self.principals: dict[str, PrincipalState] = {}
        self.ips: dict[str, IpState] = {}
        self.ranges: dict[str, IpState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.departments: dict[str, Aggregate] = {}
        self.addresses: dict[str, Aggregate] = {}
        self._pending: list[tuple[list[float], PrincipalState, AccessEvent]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconfigure(config)
        nothing = AccessEvent(0.0, "-", "-", "-", "-")
        self._last = View(nothing, self.calendar.at(0.0), self.calendar)

    def reconfigure(self, config: Any) -> None:
        """New thresholds, severities, calendar and learning (a config reload); the state of
        every principal, address and token is kept. The model and `enabled` need a restart."""
        self.config = config
        self.calendar = Calendar(config.working_hours)
        refresh = float(config.evidence_refresh_s)
        rules: list[Rule] = [
            cls(getattr(config, cls.name), refresh)
            for cls in RULES
            if getattr(config, cls.name).enabled
        ]
        self.observe_rules = [r for r in rules if "observe" in r.phases]
        self.record_rules = [r for r in rules if "record" in r.phases]
        settings = config.learning
        self.learning = Learning(
            settings.growth, settings.drift_cap, settings.min_days, self._learn
        )
        self.prior = config.priors.peaks()
        self.max_step = config.enumeration.max_step

    # -- state ---------------------------------------------------------------------------

    def _principal(self, event: AccessEvent) -> PrincipalState:
        name = event.principal
        assert name is not None
        state = self.principals.get(name)
        if state is None:
            model = self.model
            reference = model.profiles.get(name) if model is not None else None
            profile = reference.copy() if reference is not None else Profile()
            if profile.department is None:
                profile.department = event.department
            group = None
            peers = False
            if model is not None and model.groups:
                groups = model.groups
                service = reference.service if reference is not None else False
                group = groups.get(group_key(profile.department, service))
                peers = group is not None
                if group is None:
                    group = groups.get(group_key(None, service))
            state = self.principals[name] = PrincipalState(profile, reference, group)
            state.peers = peers
        return state

    def _ip(self, ip: str, ts: float) -> IpState:
        state = self.ips.get(ip)
        if state is None:
            if len(self.ips) >= MAX_TRACKED:
                self.ips = {k: v for k, v in self.ips.items() if v.last_ts >= ts - _IDLE}
            state = self.ips[ip] = IpState()
        state.last_ts = ts
        return state

    def _range(self, ip: str, ts: float) -> IpState:
        key = prefix24(ip)
        state = self.ranges.get(key)
        if state is None:
            if len(self.ranges) >= MAX_TRACKED:
                self.ranges = {k: v for k, v in self.ranges.items() if v.last_ts >= ts - _IDLE}
            state = self.ranges[key] = IpState(windows=False)
        state.last_ts = ts
        return state

    def _token(self, token_id: str, ts: float) -> TokenState:
        state = self.tokens.get(token_id)
        if state is None:
            if len(self.tokens) >= MAX_TRACKED:
                self.tokens = {k: v for k, v in self.tokens.items() if v.last_ts >= ts - _IDLE}
            state = self.tokens[token_id] = TokenState()
        state.last_ts = ts
        return state

    def _aggregate(self, table: dict[str, Aggregate], key: str, kind: str, ts: float) -> Aggregate:
        state = table.get(key)
        if state is None:
            if len(table) >= MAX_TRACKED:
                for k in [k for k, v in table.items() if v.last_ts < ts - _IDLE]:
                    del table[k]
            reference = None
            if self.model is not None:
                reference = self.model.aggregates.get(f"{kind}:{key}")
            state = table[key] = Aggregate(reference)
        state.last_ts = ts
        return state

    def forget(self, principal: str) -> None:
        """Start afresh for `principal` (after a SOC reset cleared it): its windows and firing
        rules go, so the evidence the SOC has already judged does not trip it again."""
        self.principals.pop(principal, None)

    def familiar(self, principal: str, client_ip: str) -> bool:
        """Whether `principal` may use `client_ip` while the address is suspended: it is known
        there, or it has no known addresses at all to judge by (as novelty is judged). A
        principal whose history is elsewhere is new to the address and is refused."""
        state = self.principals.get(principal)
        if state is not None:
            return not state.ips or client_ip in state.ips
        reference = self.model.profiles.get(principal) if self.model is not None else None
        return reference is None or not reference.ips or client_ip in reference.ips

    # -- per request -----------------------------------------------------------------------

    def _view(self, event: AccessEvent) -> View:
        ts = event.ts
        local = self.calendar.at(ts)
        v = View(event, local, self.calendar)
        ip = v.ip = self._ip(event.client_ip, ts)
        if ip.range is None:
            ip.range = self._range(event.client_ip, ts)
        v.range = ip.range
        ip.range.last_ts = ts
        if event.principal is not None:
            p = v.principal = self._principal(event)
            if p.day != local.day:
                p.roll_day(local.day, self.learning, self.prior)
            # High confidence needs the principal's trained history or its department's
            # peers; against the whole organisation, the priors or what it taught the
            # detector itself since, findings only raise incidents.
            reference = p.reference
            v.known = p.peers or (
                reference is not None and reference.days >= self.learning.min_days
            )
            v.novelty = p.novelty(event.client_ip, event.user_agent, event.dataset)
            if event.department is not None:
                v.department = self.departments.get(event.department)
            v.address = self.addresses.get(event.client_ip)
        if event.token_id is not None:
            v.token = self.tokens.get(event.token_id)
        return v

    def observe(self, event: AccessEvent) -> Assessment:
        """Count a request that is about to be forwarded; return what acts on it now."""
        if not self.config.enabled:
            return Assessment()
        v = self._last = self._view(event)
        ts = event.ts
        ip = v.ip
        assert ip is not None and v.range is not None
        ip.windows.advance(ts)  # type: ignore[union-attr]
        ip.windows.add_request(False)  # type: ignore[union-attr]
        ip.requests_hour.add(ts)
        ip.requests_day.add(ts)
        v.range.requests_hour.add(ts)
        v.range.requests_day.add(ts)
        ip.samples.append(event.request_id)
        model_score = 0.0
        p = v.principal
        if p is not None:
            p.observe(ts, v.local, event.request_id, event.record_id, event.dataset, self.max_step)
            day = v.local.day
            if event.department is not None:
                v.department = self._aggregate(self.departments, event.department, "department", ts)
                v.department.add(day, event.principal, event.record_id, self.learning)  # type: ignore[arg-type]
                v.department.samples.append(event.request_id)
            v.address = self._aggregate(self.addresses, event.client_ip, "address", ts)
            v.address.add(day, event.principal, event.record_id, self.learning)  # type: ignore[arg-type]
            v.address.samples.append(event.request_id)
            if self.model is not None and p.model_n >= self.config.model.min_events:
                model_score = _calibrated(p.model_score, self.model.threshold)
        if event.token_id is not None:
            token = v.token = self._token(event.token_id, ts)
            token.samples.append(event.request_id)
            v.token_switches = token.seen(ts, event.client_ip, self.config.token_spread.quick_s)
        out: list[Detection] = []
        for rule in self.observe_rules:
            rule.check(v, out)
        return self._assess(out, model_score, v)

    def record(self, event: AccessEvent, *, observed: bool) -> Assessment:
        """Add a finished request's outcome; `observed=False` for requests refused before
        the observe stage (401, 403, ...), which are then counted here."""
        if not self.config.enabled:
            return Assessment()
        first = Assessment() if observed else self.observe(event)
        # Refused before observe: the view observe just built is this event's.
        v = self._last if not observed and self._last.event is event else self._view(event)
        v.phase = "record"
        ts = event.ts
        ip = v.ip
        assert ip is not None and ip.windows is not None and v.range is not None
        ip.windows.advance(ts)
        ip.windows.add_result(event.status, event.bytes_out, event.records_out)
        if event.status == 401:
            ip.fail_hour.add(ts)
            ip.fail_day.add(ts)
            v.range.fail_hour.add(ts)
            v.range.fail_day.add(ts)
        p = v.principal
        if p is not None:
            p.windows.advance(ts)
            p.result(event.status, event.bytes_out, event.records_out)
        out: list[Detection] = []
        for rule in self.record_rules:
            rule.check(v, out)
        second = self._assess(out, 0.0, v)
        if p is not None:
            flagged = first.anomalous or second.anomalous or p.day_flagged
            if (self._learn or not flagged) and event.status < 400:
                p.remember(event.client_ip, event.user_agent, event.dataset)
            if self.model is not None:
                token = v.token
                vector = feature_vector(
                    ts,
                    v.local,
                    event.level,
                    p,
                    ip,
                    token,
                    v.novelty,
                    self.calendar.off_hours(v.local, event.principal, event.department),
                )
                self._pending.append((vector, p, event))
                if len(self._pending) >= self.config.model.batch_size:
                    self._wake.set()
        if first.detections:
            second.detections[:0] = first.detections
            second.act[:0] = first.act
            second.score = max(second.score, first.score)
        return second

    def _assess(self, out: list[Detection], model_score: float, v: View) -> Assessment:
        if not out and model_score < 0.5:
            return Assessment(model_score, out, [])
        event = v.event
        actor = event.principal if event.principal else f"ip:{event.client_ip}"
        score = model_score
        act_level = self.config.act_severity
        act: list[Detection] = []
        for detection in out:
            # A finding about an address counts for the actor that drove it only.
            if detection.actor == actor:
                score = max(score, detection.score)
            if detection.severity >= act_level:
                act.append(detection)
        if score >= 0.5:
            if v.principal is not None:
                v.principal.day_flagged = True
            if v.department is not None:
                v.department.day_flagged = True
            if v.address is not None:
                v.address.day_flagged = True
        return Assessment(score, out, act)

    # -- model batches ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _take(self) -> tuple[np.ndarray, list[tuple[list[float], PrincipalState, AccessEvent]]]:
        batch, self._pending = self._pending, []
        matrix = np.array([item[0] for item in batch], dtype=np.float64)
        return matrix.reshape(len(batch), len(FEATURE_NAMES)), batch

    def _apply(
        self, raw: np.ndarray, batch: list[tuple[list[float], PrincipalState, AccessEvent]]
    ) -> list[ModelResult]:
        assert self.model is not None
        settings = self.config.model
        alpha = settings.smoothing
        threshold = self.model.threshold
        results = []
        for value, (vector, state, event) in zip(raw.tolist(), batch, strict=True):
            if state.model_n == 0:
                state.model_score = value
            else:
                state.model_score += alpha * (value - state.model_score)
            state.model_n += 1
            score = 0.0
            detection = None
            if state.model_n >= settings.min_events:
                score = _calibrated(state.model_score, threshold)
            if score >= 0.5:
                detection = self._model_detection(event, state, vector, value, score)
            results.append(ModelResult(event, value, score, detection))
        return results

    def _model_detection(
        self,
        event: AccessEvent,
        state: PrincipalState,
        vector: list[float],
        raw: float,
        score: float,
    ) -> Detection:
        assert event.principal is not None and self.model is not None
        return Detection(
            rule="model",
            severity=self.config.model.severity,
            scope="principal",
            key=event.principal,
            principal=event.principal,
            department=event.department,
            dataset=event.dataset,
            title=f"unusual behaviour of {event.principal} (model score {score:.2f})",
            score=score,
            ts=event.ts,
            evidence=Evidence(
                {"smoothed_anomaly": round(state.model_score, 4), "event_anomaly": round(raw, 4)},
                {"threshold": round(self.model.threshold, 4)},
                dict(zip(FEATURE_NAMES, (round(v, 4) for v in vector), strict=True)),
                tuple(state.samples),
            ),
            actor=event.principal,
            remediation="Review the evidence with the data owner; the model saw a departure.",
        )

    def take_vectors(self) -> tuple[np.ndarray, list[AccessEvent]]:
        """Hand over the queued feature vectors and their events unscored (for fitting)."""
        matrix, batch = self._take()
        return matrix, [item[2] for item in batch]

    def score_pending(self) -> list[ModelResult]:
        """Score every queued event in one vectorised call (synchronously), in queue order."""
        if self.model is None or self.model.forest is None or not self._pending:
            self._pending.clear()
            return []
        matrix, batch = self._take()
        return self._deliver(self._apply(self.model.forest.anomaly(matrix), batch))

    def _deliver(self, results: list[ModelResult]) -> list[ModelResult]:
        if self.on_result is not None:
            for result in results:
                self.on_result(result)
        return results

    async def run(self) -> None:
        """Score queued events every batch interval, or sooner when a batch is full."""
        interval = self.config.model.batch_interval_ms / 1000.0
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            if self.model is None or self.model.forest is None or not self._pending:
                self._pending.clear()
                continue
            matrix, batch = self._take()
            try:
                # The traversal is numpy work; a thread keeps it off the event loop.
                raw = await loop.run_in_executor(None, self.model.forest.anomaly, matrix)
                self._deliver(self._apply(raw, batch))
            except Exception:
                # One bad batch or subscriber must not stop scoring for good.
                log.exception("detector_batch_failed", events=len(batch))

    def start(self) -> None:
        """Start the batch scorer as a task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run())

    async def stop(self) -> None:
        """Stop the batch scorer and score whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.score_pending()
