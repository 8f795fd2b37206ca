"""The mask stage: guards queries on hidden fields, then desensitises the upstream's response."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from multidict import CIMultiDict

from gateway.errors import GatewayError
from gateway.masking import scanner
from gateway.masking.codecs import BodyTransform, MaskReport, open_transform
from gateway.masking.config import MaskingConfig
from gateway.masking.errors import MaskingError
from gateway.masking.plan import (
    MaskPlan,
    PlanCache,
    WalkObserver,
    check_dataset,
    refused_query,
)
from gateway.masking.strategies import pseudonym_key

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.policy.catalog import Dataset

NO_BODY_STATUSES = frozenset({204, 304})
_MAX_KEYS = 10_000  # consumers whose pseudonym keys are kept
# Response headers whose values are the protocol's own, never data: not scanned.
PLAIN_HEADERS = frozenset(
    {
        "date",
        "server",
        "content-type",
        "content-length",
        "content-encoding",
        "x-request-id",
        "cache-control",
        "vary",
        "expires",
        "last-modified",
        "etag",
        "age",
    }
)


def effective_clearance(ctx: RequestContext) -> int:
    """The decision's mask clearance (a grant may raise it), else the principal's; 1 if none."""
    granted = getattr(ctx.decision, "mask_clearance", None)
    if granted is not None:
        return int(granted)
    return ctx.principal.clearance if ctx.principal is not None else 1


class MaskStage:
    """Pre-forward: refuse queries on fields the caller may only see masked. Post-forward:
    `body_transform` gives the transform that masks the response body (None: pass through)."""

    name = "mask"

    def __init__(
        self,
        config: MaskingConfig,
        observer: Callable[[Dataset], WalkObserver] | None = None,
    ) -> None:
        self.config = config
        self.plans = PlanCache(config, observer)
        self._keys: dict[str, bytes] = {}  # consumer -> pseudonym key (an HMAC to derive)

    def check(self, datasets: Iterable[Dataset]) -> None:
        """Validate every dataset's masking rules when the catalog loads (ConfigError naming
        the dataset and field), instead of at the first request."""
        for dataset in datasets:
            check_dataset(dataset, self.config)

    def plan(self, ctx: RequestContext) -> MaskPlan | None:
        """The request's plan, kept in the context: it depends only on the dataset and the
        decision, both settled before this stage runs."""
        plan = ctx.mask_plan
        if plan is None and ctx.dataset is not None:
            plan = ctx.mask_plan = self.plans.get(ctx.dataset, effective_clearance(ctx))
        return plan

    async def __call__(self, ctx: RequestContext) -> None:
        plan = self.plan(ctx)
        if plan is None or not plan.active:
            return
        # Callers who see masked fields: only the route's declared parameters pass (ctx.query
        # is the raw query string the route stage kept: no query, nothing to guard).
        if ctx.query:
            assert ctx.dataset is not None  # a plan is only made for a routed request
            refusal = refused_query(plan, ctx.dataset.query_rules, ctx.request.query.items())
            if refusal is not None:
                raise GatewayError(refusal.code, refusal.message, reason=refusal.reason)
        # A path that names a record by an identifier the caller may only see masked would
        # confirm that identifier by answering: refuse it like a query on the field.
        if plan.scan and scanner.kinds_in(ctx.path):
            raise GatewayError(
                "forbidden",
                "the path holds an identifier you may only see masked",
                reason="masked_field_query",
            )
        # A read with a body (a search DSL in a GET) could filter on masked fields unseen.
        if ctx.method in ("GET", "HEAD") and ctx.request.body_exists:
            raise GatewayError(
                "bad_request",
                f"a {ctx.method} request with a body is refused on a masked route",
                reason="body_on_read",
            )

    def mask_headers(self, ctx: RequestContext, headers: CIMultiDict[str]) -> None:
        """Identifiers in upstream response headers (Location, Content-Disposition, custom
        ones) are masked like those in the body, for callers the scanner runs for."""
        plan = self.plan(ctx)
        if plan is None or not plan.active or not plan.scan:
            return
        counts: dict[str, int] = {}
        masked = [
            (name, value if name.lower() in PLAIN_HEADERS else scanner.scan_text(value, counts))
            for name, value in headers.items()
        ]
        if counts:
            headers.clear()
            headers.extend(masked)
            for kind, n in counts.items():
                ctx.findings[kind] = ctx.findings.get(kind, 0) + n

    def body_transform(
        self, ctx: RequestContext, status: int, headers: Mapping[str, str]
    ) -> BodyTransform | None:
        """The transform for this response's body, None to pass it through untouched.

        Raises MaskingError (see `gateway_error`) for responses that cannot be masked safely:
        partial content, unknown content type, encoding or charset. The transform's
        `finish()` copies its report into ctx.masked_fields, ctx.findings, ctx.records_out.
        """
        plan = self.plan(ctx)
        if plan is None or not plan.active:
            return None
        if ctx.method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            return None
        if headers.get("Content-Length") == "0":
            return None  # an empty body (a bare redirect or 201) has nothing to mask
        if status == 206:
            raise MaskingError(
                "partial_content", "a partial response on a masked route cannot be masked"
            )
        key = b""
        if plan.needs_key:
            secret = self.config.pseudonym_secret
            assert secret is not None  # compile_plan refuses pseudonym fields without it
            principal = ctx.principal
            consumer = principal.client_id or principal.subject if principal else "anonymous"
            key = self._keys.get(consumer, b"")
            if not key:
                if len(self._keys) >= _MAX_KEYS:
                    self._keys.clear()
                key = self._keys[consumer] = pseudonym_key(secret.reveal(), consumer)

        def record(report: MaskReport) -> None:
            for label, n in report.masked_fields.items():
                ctx.masked_fields[label] = ctx.masked_fields.get(label, 0) + n
            for kind, n in report.findings.items():
                ctx.findings[kind] = ctx.findings.get(kind, 0) + n
            ctx.records_out += report.records_out

        return open_transform(
            plan,
            self.config,
            content_type=headers.get("Content-Type"),
            content_encoding=headers.get("Content-Encoding"),
            content_length=_length(headers.get("Content-Length")),
            key=key,
            on_finish=record,
        )

    @staticmethod
    def gateway_error(exc: MaskingError) -> GatewayError:
        """The consumer-facing error (502 upstream_error or 413 payload_too_large)."""
        return exc.gateway_error()


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise MaskingError("bad_length", "the upstream sent an invalid Content-Length") from None
    if length < 0:
        raise MaskingError("bad_length", "the upstream sent an invalid Content-Length")
    return length
