"""App wiring: builds the stages from the config, the data and admin listeners, start and stop."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from detectors import Detector, ModelResult, load_configured_model
from gateway import logs
from gateway import reload as config_reload
from gateway.access import admin as access_admin
from gateway.access.events import event_sinks
from gateway.access.http import ConsumerAPI
from gateway.access.service import AccessRequests
from gateway.admin import dashboard
from gateway.admin.app import admin_app, health_app
from gateway.admin.stats import DashboardStats
from gateway.audit.writer import AuditWriter
from gateway.breaker import admin as breaker_admin
from gateway.breaker.store import Breakers
from gateway.clientip import client_ip_resolver
from gateway.config import Config, load_config
from gateway.context import RequestContext
from gateway.errors import ConfigError, GatewayError, StateUnavailable
from gateway.identity.clientcert import ClientCerts, for_connection
from gateway.identity.revocation import RevocationList
from gateway.identity.verifier import Verifier
from gateway.incidents import admin as incident_admin
from gateway.incidents.findings import (
    audit_unavailable,
    config_rejected,
    policy_rejected,
    unmaskable_response,
)
from gateway.incidents.responder import Responder
from gateway.incidents.service import Incidents
from gateway.incidents.sinks import build_sinks
from gateway.limits import RateLimiter
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.policy import admin as policy_admin
from gateway.policy.bundle import PolicyBundle
from gateway.policy.decider import Decider
from gateway.policy.grants import GrantStore
from gateway.policy.startup import bundle_checks
from gateway.policy.store import PolicyStore
from gateway.reports import admin as reports_admin
from gateway.reports.quality import Quality
from gateway.reports.usage import Usage
from gateway.stages.authenticate import AuthenticateStage
from gateway.stages.authorise import AuthoriseStage
from gateway.stages.forward import ForwardStage, Upstream
from gateway.stages.mask import MaskStage
from gateway.stages.observe import ObserveStage
from gateway.stages.record import RecordStage, iso
from gateway.stages.route import RouteStage
from gateway.stages.suspension import SuspensionStage
from gateway.state import StateBackend, open_backend
from gateway.tls import ListenerTLSConfig, listener_context, upstream_context

# After the listeners have closed, how long requests cut at shutdown get to write their record.
RECORD_GRACE = 5.0


class ListenError(Exception):
    """A listener could not bind its address (e.g. the port is in use)."""


@dataclasses.dataclass
class Listener:
    name: str
    app: web.Application | web.Server
    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    runner: web.BaseRunner | None = None
    bound_port: int | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ssl is not None else "http"


def upstreams_from(config: Config) -> dict[str, Upstream]:
    return {
        name: Upstream(
            name,
            u.url,
            u.connect_timeout,
            u.total_timeout,
            u.pool_size,
            upstream_context(u.tls, f"upstreams.{name}.tls")
            if u.url.startswith("https://")
            else None,
        )
        for name, u in config.upstreams.items()
    }


async def start_listener(
    listener: Listener, *, reuse_port: bool, shutdown_timeout: float, **server_args: Any
) -> None:
    runner: web.BaseRunner
    if isinstance(listener.app, web.Application):
        runner = web.AppRunner(
            listener.app, access_log=None, shutdown_timeout=shutdown_timeout, **server_args
        )
    else:  # the low-level server was built with its arguments
        runner = web.ServerRunner(listener.app, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(
        runner,
        listener.host,
        listener.port,
        ssl_context=listener.ssl,
        reuse_address=True,
        reuse_port=reuse_port or None,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            f"cannot listen on {listener.host}:{listener.port} for the {listener.name} "
            f"listener: {exc.strerror or exc}"
        ) from None
    listener.runner = runner
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None) or []
    listener.bound_port = sockets[0].getsockname()[1] if sockets else listener.port


def client_certs_for(tls: ListenerTLSConfig | None) -> ClientCerts | None:
    """Client certificates are read only on a listener that asks for them."""
    if tls is None or not tls.asks_for_client_certs:
        return None
    return ClientCerts(tls.require_bound_tokens)


def data_server(pipeline: Pipeline, consumer: ConsumerAPI, **server_args: Any) -> web.Server:
    """The data listener: every request goes to the pipeline, whose route stage (not an
    aiohttp router) decides what is served, except the consumers' own API under its reserved
    prefix. Request bodies pass through as sent (no decompression: the upstream gets the
    bytes and the Content-Encoding the client sent)."""
    handler = consumer.wrap(pipeline.handle)
    return web.Server(handler, access_log=None, auto_decompress=False, **server_args)


class Gateway:
    """One gateway process: its state, its stages, its two listeners."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        worker: int | None = None,
        metrics_peers: Path | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.worker = worker
        self.metrics = Metrics(worker, metrics_peers)
        self.log = get_logger("datagate")
        self.started = False
        self.listeners: list[Listener] = []
        self._log_flusher: asyncio.Task[None] | None = None
        self.state: StateBackend = open_backend(
            config.state.url, config.state.prefix, **config.state.options()
        )
        self.usage = Usage(keep_days=config.reports.usage_days)
        self.quality = Quality(config.reports.quality_samples) if config.reports.quality else None
        if self.quality is not None:
            self.metrics.registry.register(self.quality.collector())
        self.mask = MaskStage(config.masking, self._quality_observer())
        self.revocations = RevocationList(
            self.state, clock=clock, reload_interval=config.identity.revocation_reload
        )
        self.verifier = Verifier(config.identity, self.revocations, clock=clock)
        # Loads and validates the policy now: a gateway never starts without one.
        self.policy = PolicyStore(
            config.policy,
            backend=self.state,
            clock=clock,
            on_rejected=self._policy_rejected,
            validators=bundle_checks(lambda: self.config),
        )
        self.grants = GrantStore(
            self.state,
            catalog=lambda: self.policy.current.catalog,
            lifetimes=config.policy.grant_max_lifetime,
            clock=clock,
            on_change=self._grant_changed,
        )
        self.decider = Decider(
            lambda: self.policy.current,
            self.grants,
            config.policy.tz,
            monitor=config.policy.monitor,
            cache_size=config.policy.cache_size,
        )
        self.policy.on_swap(self._policy_swapped)
        self.policy.on_swap(lambda _: self.metrics.policy_reloads.labels("loaded").inc())
        self.grants.on_refresh(self.decider.clear)
        self.breakers = Breakers(self.state, config.breaker, clock)
        self.incidents = Incidents(
            self.state, config.incidents, build_sinks(config.incidents, self.state), clock
        )
        self.responder = Responder(self.breakers, self.incidents, config.breaker)
        self.audit = (
            AuditWriter(config.audit, clock, worker=worker, on_failure=self._audit_failed)
            if config.audit.enabled
            else None
        )
        self.metrics.watch(audit=self.audit, breakers=self.breakers, incidents=self.incidents)
        self.stats = DashboardStats(clock=clock)
        self.access = AccessRequests(
            self.state,
            config=config.access,
            catalog=lambda: self.policy.current.catalog,
            lifetimes=config.policy.grant_max_lifetime,
            grants=self.grants,
            clock=clock,
            events=event_sinks(config.incidents, config.access, self.state),
            audit=self.audit.append if self.audit is not None else None,
        )
        self.detector = (
            Detector(
                config.detection,
                load_configured_model(config.detection),
                on_result=self._model_result,
            )
            if config.detection.enabled
            else None
        )
        self._background: set[asyncio.Task[Any]] = set()
        if self.detector is not None:
            self.breakers.on_reset(self._soc_reset)
        self.suspension = SuspensionStage(
            self.breakers,
            config.breaker,
            self.detector.familiar if self.detector is not None else None,
        )
        self.forward = ForwardStage(
            upstreams_from(config),
            request_max_bytes=config.server.request_max_bytes,
        )
        self.client_certs = client_certs_for(config.server.tls)
        self.admin_certs = client_certs_for(config.admin.tls)
        self._reloading = asyncio.Lock()
        self.config_loaded_at = clock()
        self.pipeline = self._pipeline()
        self.consumer = ConsumerAPI(
            authenticate=lambda: AuthenticateStage(self.verifier, client_certs=self.client_certs),
            suspension=self.suspension,
            catalog=lambda: self.policy.current.catalog,
            decider=self.decider,
            plans=lambda: self.mask.plans,
            requests=self.access,
            client_ip=client_ip_resolver(config.server.trusted_proxies),
            clock=clock,
            audit=self.audit.append if self.audit is not None else None,
        )
        if config.policy.source == "files":  # from the store, the first load is in start()
            self._policy_swapped(self.policy.current)

    def _pipeline(self) -> Pipeline:
        """The stages wired from the config in force (a config reload rewires with them)."""
        config = self.config
        record = RecordStage(
            self.metrics,
            policy_version=lambda: self.policy.current.version,
            audit=self.audit,
            detector=self.detector,
            sinks=(self.stats.add, self.usage.add),
            outcomes=self.responder,
            log_requests=config.server.access_log,
            seq_roles=frozenset(config.admin.roles),
        )
        return Pipeline(
            route=RouteStage(lambda: self.policy.current.catalog, config.server.max_path_length),
            authenticate=AuthenticateStage(self.verifier, client_certs=self.client_certs),
            suspension=self.suspension,
            authorise=AuthoriseStage(self.decider),
            observe=ObserveStage(
                RateLimiter(self.state, config.limits),
                self.detector,
                self.responder,
                self.suspension,
            ),
            forward=self.forward,
            mask=self.mask,
            record=record,
            client_ip=client_ip_resolver(config.server.trusted_proxies),
            clock=self.clock,
            on_unmaskable=self._unmaskable,
        )

    # --- checks and callbacks -------------------------------------------------------------

    def _quality_observer(self) -> Callable[[Any], Any] | None:
        """Each dataset's data-quality observer for the masking walk (None: not counted)."""
        quality = self.quality
        if quality is None:
            return None
        return lambda dataset: quality.observer(
            dataset.id, frozenset(f.name for f in dataset.fields)
        )

    async def _unmaskable(self, ctx: RequestContext, error: GatewayError) -> None:
        """A response that could not be masked was refused: the SOC hears of it (repeats
        update one incident per principal and dataset)."""
        if ctx.dataset is None:
            return
        finding = unmaskable_response(
            ctx.dataset.id,
            error.reason or error.code,
            ctx.principal.subject if ctx.principal else None,
        )
        try:
            incident = await self.incidents.raise_detection(
                finding,
                client_ip=ctx.client_ip,
                path=ctx.path,
                request_id=ctx.request_id,
                department=ctx.principal.department if ctx.principal else None,
                level=ctx.dataset.level,
            )
        except StateUnavailable:
            return  # the refusal stands either way
        ctx.incident_id = incident["finding_info"]["uid"]

    def _soc_reset(self, state: Any) -> None:
        """The SOC judged a principal's suspension: its detector state starts afresh."""
        if self.detector is not None and state.scope == "principal":
            self.detector.forget(state.key)

    def _model_result(self, result: ModelResult) -> None:
        """The batch-scored model found a principal anomalous: raise it (off the request)."""
        if result.detection is None:
            return
        event = result.event
        task = asyncio.ensure_future(
            self.responder.on_model_detection(
                result.detection,
                client_ip=event.client_ip,
                path=event.path,
                request_id=event.request_id,
                level=event.level,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _audit_failed(self, error: str) -> None:
        """The audit disk refuses writes: the SOC hears of it at once (the writer logs it)."""
        task = asyncio.ensure_future(
            self.incidents.raise_detection(
                audit_unavailable(error),
                client_ip=None,
                path=str(self.audit.config.path) if self.audit is not None else None,
                request_id=None,
                department=None,
                level=None,
            )
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _policy_swapped(self, bundle: PolicyBundle) -> None:
        self.decider.clear()
        self.metrics.policy_info.clear()
        self.metrics.policy_info.labels(bundle.version).set(bundle.loaded_at)
        self.metrics.policy_source.clear()
        self.metrics.policy_source.labels(bundle.version, self.policy.source).set(
            self.policy.seq or 0
        )

    async def _config_rejected(self, path: Path, message: str) -> None:
        self.log.error("config_rejected", path=str(path), error=message, worker=self.worker)
        await self.incidents.raise_detection(
            config_rejected(message),
            client_ip=None,
            path=str(path),
            request_id=None,
            department=None,
            level=None,
        )

    async def _policy_rejected(self, message: str) -> None:
        self.metrics.policy_reloads.labels("rejected").inc()
        self.log.error("policy_rejected_alert", message=message)
        await self.incidents.raise_detection(
            policy_rejected(message),
            client_ip=None,
            path=str(self.config.policy.dir),
            request_id=None,
            department=None,
            level=None,
        )

    def _grant_changed(self, action: str, grant: Any, actor: str) -> None:
        self.log.info("grant_changed", action=action, grant=grant.id, actor=actor)
        if self.audit is not None:
            self.audit.append(
                {
                    "type": "grant",
                    "ts": iso(self.clock()),
                    "action": action,
                    "grant": grant.to_json(),
                    "actor": actor,
                }
            )

    def _admin_action(self, principal: Any, request: web.Request, status: int) -> None:
        if self.audit is not None:
            self.audit.append(
                {
                    "type": "admin",
                    "ts": iso(self.clock()),
                    "actor": principal.subject,
                    "roles": sorted(principal.roles),
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                }
            )

    # --- admin ----------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        bundle = self.policy.current
        checks = {
            "started": self.started,
            "breakers": self.breakers.trusted,
            "audit": self.audit is None or self.audit.healthy,
        }
        return {
            "ready": all(checks.values()),
            "checks": checks,
            "policy_version": bundle.version,
            "policy_source": self.policy.source,
            "policy_seq": self.policy.seq,
            "policy_loaded_at": iso(bundle.loaded_at),
            "config_loaded_at": iso(self.config_loaded_at),
            "state": self.state.name,
        }

    async def _admin_principal(self, request: web.Request) -> Any:
        principal = await self.verifier.authenticate(request.headers.get("Authorization"))
        return for_connection(principal, self.admin_certs, request, self.verifier.realm)

    def admin(self) -> web.Application:
        return admin_app(
            metrics=self.metrics,
            readiness=self.readiness,
            authenticate=self._admin_principal,
            roles=self.config.admin.roles,
            route_tables=[
                policy_admin.routes(self.policy, self.grants, self.clock),
                incident_admin.routes(self.incidents),
                breaker_admin.routes(self.breakers, self.clock),
                dashboard.routes(self.stats, clock=self.clock),
                reports_admin.routes(
                    usage=self.usage,
                    quality=self.quality,
                    incidents=self.incidents,
                    bundle=lambda: self.policy.current,
                    grants=self.grants,
                    access=self.access,
                    officer_role=self.config.access.officer_role,
                    admin_roles=self.config.admin.roles,
                    clock=self.clock,
                ),
                access_admin.routes(
                    self.access,
                    admin_roles=self.config.admin.roles,
                    catalog=lambda: self.policy.current.catalog,
                    decider=self.decider,
                    plans=lambda: self.mask.plans,
                    clock=self.clock,
                ),
            ],
            on_action=self._admin_action,
            scoped_roles={
                p: [self.config.access.officer_role]
                for p in (*access_admin.OFFICER_PATHS, *reports_admin.OFFICER_PATHS)
            },
        )

    # --- life cycle -----------------------------------------------------------------------

    def server_args(self) -> dict[str, Any]:
        limit = self.config.server.max_header_bytes
        return {"max_line_size": limit, "max_field_size": limit, "max_headers": 100}

    async def start(self, *, reuse_port: bool = False) -> None:
        """Connect state, load views, then open the listeners; ListenError if a port is taken."""
        if self.audit is not None:
            await self.audit.start()
        await self.state.start()
        await self.revocations.start()
        await self.verifier.start()
        await self.grants.start()
        await self.policy.start()
        await self.breakers.start()
        await self.incidents.start()
        await self.access.start()
        await self.metrics.start()
        if self.detector is not None:
            self.detector.start()
        for name, upstream in self.config.upstreams.items():
            if upstream.tls is not None and not upstream.tls.verify:
                self.log.warning(
                    "upstream_tls_unverified",
                    upstream=name,
                    url=upstream.url,
                    detail="verify: false: the upstream's certificate and host name are not "
                    "checked; anyone on the path can read and change its data",
                )
        await self.forward.start()
        server, admin = self.config.server, self.config.admin
        self.listeners = [
            Listener(
                "data",
                data_server(self.pipeline, self.consumer, **self.server_args()),
                server.host,
                server.port,
                listener_context(server.tls, "server.tls") if server.tls else None,
            ),
            Listener(
                "admin",
                self.admin(),
                admin.host,
                admin.port,
                listener_context(admin.tls, "admin.tls") if admin.tls else None,
            ),
        ]
        if self.config.health is not None:
            health = self.config.health
            self.listeners.append(
                Listener("health", health_app(self.readiness), health.host, health.port)
            )
        for listener in self.listeners:
            await start_listener(
                listener,
                reuse_port=reuse_port,
                shutdown_timeout=server.shutdown_timeout,
                **self.server_args(),
            )
        self.started = True
        self._log_flusher = asyncio.create_task(self._flush_logs(), name="log-flush")
        self.log.info("started", urls=self.urls(), policy_version=self.policy.current.version)

    def urls(self) -> tuple[str, str]:
        data, admin = self.listeners[:2]
        host = lambda h: "127.0.0.1" if h in ("0.0.0.0", "::", "") else h  # noqa: E731
        return (
            f"{data.scheme}://{host(data.host)}:{data.bound_port}",
            f"{admin.scheme}://{host(admin.host)}:{admin.bound_port}",
        )

    async def reload(self, config_path: Path | None = None) -> None:
        """SIGHUP: re-read the config file (when the gateway runs from one), then the policy."""
        async with self._reloading:
            if config_path is not None:
                ok = await self.reload_config(config_path)
                self.metrics.config_reloads.labels("loaded" if ok else "rejected").inc()
            await self.policy.reload(trigger="signal")

    async def reload_config(self, path: Path) -> bool:
        """Validate the file and apply what can change live; an invalid file keeps the
        running config (an error and a low-severity incident). Keys that need a restart are
        named in a warning and keep their running values."""
        running = self.config
        try:
            new = await asyncio.to_thread(load_config, path)
            plan = config_reload.plan(running, new)
            adopted = config_reload.adopt(running, new, plan.live)
            sections = plan.sections()
            # Everything that can refuse the new config is built before anything is swapped.
            mask = (
                MaskStage(adopted.masking, self._quality_observer())
                if "masking" in sections
                else self.mask
            )
            if mask is not self.mask:
                mask.check(self.policy.current.catalog.datasets.values())
            verifier = (
                Verifier(adopted.identity, self.revocations, clock=self.clock)
                if "identity" in sections
                else self.verifier
            )
        except ConfigError as exc:
            await self._config_rejected(path, str(exc))
            return False
        if plan.restart:
            self.log.warning(
                "config_restart_required",
                path=str(path),
                keys=[config_reload.dotted(k) for k in plan.restart],
                worker=self.worker,
            )
        if not plan.live:
            return True
        old_verifier = self.verifier
        if verifier is not old_verifier:
            await verifier.start()
        self.config = adopted
        self.mask = mask
        self.verifier = verifier
        if self.detector is not None and "detection" in sections:
            self.detector.reconfigure(adopted.detection)
        if "breaker" in sections:
            self.breakers.config = self.responder.config = adopted.breaker
            self.suspension.config = adopted.breaker
        if "upstreams" in sections:
            self.forward.retime(
                {n: (u.connect_timeout, u.total_timeout) for n, u in adopted.upstreams.items()}
            )
        self.pipeline.rewire(self._pipeline())
        self.config_loaded_at = self.clock()
        if verifier is not old_verifier:
            await old_verifier.close()
        self.log.info(
            "config_reloaded",
            path=str(path),
            keys=[config_reload.dotted(k) for k in plan.live],
            worker=self.worker,
        )
        return True

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            logs.flush()

    async def stop(self) -> None:
        """Stop accepting on both listeners at once, give in-flight requests up to
        `server.shutdown_timeout` to finish, then flush and close everything behind them."""
        self.started = False
        if self._log_flusher is not None:
            self._log_flusher.cancel()
            await asyncio.gather(self._log_flusher, return_exceptions=True)
        await asyncio.gather(
            *(listener.runner.cleanup() for listener in self.listeners if listener.runner)
        )
        # Requests cut at the deadline record themselves as they unwind: wait for that
        # before the audit log and the incidents are flushed and closed.
        deadline = time.monotonic() + RECORD_GRACE
        while self.pipeline.running and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.pipeline.running:
            self.log.error("shutdown_requests_unrecorded", requests=self.pipeline.running)
        await self.forward.close()
        if self.detector is not None:
            await self.detector.stop()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.metrics.close()
        await self.access.close()
        await self.incidents.close()
        await self.breakers.close()
        await self.policy.close()
        await self.grants.close()
        await self.verifier.close()
        await self.revocations.close()
        if self.audit is not None:
            await self.audit.close()
        await self.state.close()
        logs.flush()
