"""The online detector the gateway calls: O(1) observe/record per request, batched model scoring."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import structlog

from detectors.calendar import Calendar
from detectors.config import DetectionConfig
from detectors.detection import Assessment, Detection, Evidence
from detectors.events import AccessEvent
from detectors.features import (
    FEATURE_NAMES,
    IpState,
    PrincipalBaseline,
    PrincipalState,
    TokenState,
    feature_vector,
)
from detectors.model import DetectorModel, load_model
from detectors.rules import Rules

__all__ = ["Detector", "ModelResult", "load_configured_model"]

log = structlog.get_logger("datagate.detectors")

MAX_TRACKED = 100_000  # client IPs / tokens kept before idle ones are dropped
_IDLE = 3600.0


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


def load_configured_model(config: DetectionConfig) -> DetectorModel | None:
    """The model named in the config; None (with a warning) when none is configured or found."""
    if config.model.path is None:
        log.warning(
            "detection_model_missing", detail="no model configured: rules and baselines only"
        )
        return None
    path = Path(config.model.path)
    if not path.exists():
        log.warning("detection_model_missing", path=str(path), detail="rules and baselines only")
        return None
    return load_model(path)


def _calibrated(smoothed: float, threshold: float) -> float:
    """Map a smoothed anomaly to 0..1 so that the calibrated threshold lands on 0.5."""
    if smoothed < threshold:
        return 0.5 * smoothed / threshold
    return min(1.0, 0.5 + 0.5 * (smoothed - threshold) / (1.0 - threshold))


class Detector:
    """Behaviour state for all principals, client IPs and tokens, plus the model queue.

    Per request: `observe(event)` before forwarding returns the rule detections to act on;
    `record(event, observed=...)` after the response adds the outcome and queues the
    event's feature vector. Model scoring happens in batches: `score_pending()` scores the
    queue in one vectorised call, and `run()` (or `start()`/`stop()`) does that every
    `model.batch_interval_ms` or once `model.batch_size` events are queued, in a worker
    thread, handing every result to `on_result`.
    """

    def __init__(
        self,
        config: DetectionConfig,
        model: DetectorModel | None = None,
        *,
        on_result: Callable[[ModelResult], None] | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.on_result = on_result
        self.calendar = Calendar(config.working_hours)
        self.rules = Rules(config)
        self.principals: dict[str, PrincipalState] = {}
        self.ips: dict[str, IpState] = {}
        self.tokens: dict[str, TokenState] = {}
        self._pending: list[tuple[list[float], PrincipalState, AccessEvent]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        default = model.default_hourly if model else [config.default_hourly] * 48
        self._default_hourly = list(default)

    def reconfigure(self, config: DetectionConfig) -> None:
        """New thresholds, severities and calendar (a config reload); the behaviour state of
        every principal, IP and token is kept. The model and `enabled` need a restart."""
        self.config = config
        self.calendar = Calendar(config.working_hours)
        self.rules = Rules(config)
        if self.model is None:
            self._default_hourly = [config.default_hourly] * 48

    # -- state ---------------------------------------------------------------------------

    def _principal(self, name: str) -> PrincipalState:
        state = self.principals.get(name)
        if state is None:
            known = self.model.baselines.get(name) if self.model else None
            if known is None:
                hourly = list(self._default_hourly)
                known = PrincipalBaseline(hourly, max(hourly), [], [])
            else:
                # The state updates its baseline online; keep the loaded model unchanged.
                known = PrincipalBaseline(list(known.hourly), known.peak, known.ips, known.agents)
            state = self.principals[name] = PrincipalState(known)
        return state

    def _ip(self, ip: str, ts: float) -> IpState:
        state = self.ips.get(ip)
        if state is None:
            if len(self.ips) >= MAX_TRACKED:
                self.ips = {k: v for k, v in self.ips.items() if v.last_ts >= ts - _IDLE}
            state = self.ips[ip] = IpState()
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

    def forget(self, principal: str) -> None:
        """Start afresh for `principal` (after a SOC reset cleared it): its windows and firing
        rules go, so the evidence the SOC has already judged does not trip it again."""
        self.principals.pop(principal, None)

    # -- per request -----------------------------------------------------------------------

    def observe(self, event: AccessEvent) -> Assessment:
        """Count a request that is about to be forwarded; return what acts on it now."""
        if not self.config.enabled:
            return Assessment()
        ts = event.ts
        out: list[Detection] = []
        ip = self._ip(event.client_ip, ts)
        ip.windows.advance(ts)
        ip.windows.add_request(False)
        ip.samples.append(event.request_id)
        rules = self.rules
        if not rules.quiet(ip):
            rules.frequency("client_ip", event.client_ip, ip, event, out)
            rules.enumeration("client_ip", event.client_ip, ip, event, out)
        rules.auth_failures(ip, event, out)
        model_score = 0.0
        if event.principal is not None:
            state = self._principal(event.principal)
            local = self.calendar.at(ts)
            state.roll_hour(ts, local.slot, self.config.baseline_alpha, self.config.default_hourly)
            state.observe(
                ts,
                event.request_id,
                event.record_id,
                event.dataset,
                self.config.enumeration.max_step,
            )
            rules.principal_rules(
                state,
                event,
                local,
                *state.novelty(event.client_ip, event.user_agent),
                out,
            )
            if self.model is not None and state.model_n >= self.config.model.min_events:
                model_score = _calibrated(state.model_score, self.model.threshold)
        if event.token_id is not None:
            token = self._token(event.token_id, ts)
            token.samples.append(event.request_id)
            rules.token_spread(token, token.seen(ts, event.client_ip), event, out)
        return self._assess(out, model_score, event)

    def record(self, event: AccessEvent, *, observed: bool) -> Assessment:
        """Add a finished request's outcome; `observed=False` for requests refused before
        the observe stage (401, 403, ...), which are then counted here."""
        if not self.config.enabled:
            return Assessment()
        first = Assessment() if observed else self.observe(event)
        ts = event.ts
        out: list[Detection] = []
        ip = self._ip(event.client_ip, ts)
        ip.windows.advance(ts)
        ip.windows.add_result(event.status, event.bytes_out, event.records_out)
        if event.status == 401:
            self.rules.auth_failures(ip, event, out)
        if event.status == 404:
            self.rules.enumeration("client_ip", event.client_ip, ip, event, out)
        if event.principal is not None:
            state = self._principal(event.principal)
            state.windows.advance(ts)
            state.windows.add_result(event.status, event.bytes_out, event.records_out)
            self.rules.bulk(state, event, out, response=True)
            flagged = first.anomalous or state.flagged_hour or any(d.score >= 0.5 for d in out)
            new_ip, new_agent = state.novelty(event.client_ip, event.user_agent)
            if not flagged:
                state.remember(event.client_ip, event.user_agent)
            if self.model is not None:
                token = self.tokens.get(event.token_id) if event.token_id else None
                local = self.calendar.at(ts)
                vector = feature_vector(ts, local, event.level, state, ip, token, new_ip, new_agent)
                self._pending.append((vector, state, event))
                if len(self._pending) >= self.config.model.batch_size:
                    self._wake.set()
        second = self._assess(out, 0.0, event)
        if first.detections:
            second.detections[:0] = first.detections
            second.act[:0] = first.act
            second.score = max(second.score, first.score)
        return second

    def _assess(self, out: list[Detection], model_score: float, event: AccessEvent) -> Assessment:
        if not out and model_score < 0.5:
            return Assessment(model_score, out, [])
        score = model_score
        act_level = self.config.act_severity
        act: list[Detection] = []
        for detection in out:
            score = max(score, detection.score)
            if detection.severity >= act_level:
                act.append(detection)
        if score >= 0.5 and event.principal is not None:
            self.principals[event.principal].flagged_hour = True
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
                state.flagged_hour = True
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
        severity = 4 if score >= 0.8 else 3
        return Detection(
            rule="model",
            severity=severity,
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
