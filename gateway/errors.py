"""The one place that maps internal failures to the public error codes of PRODUCT.md."""

from __future__ import annotations

from typing import Any

# code -> HTTP status, exactly as PRODUCT.md lists them.
STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "payload_too_large": 413,
    "sharing_suspended": 423,
    "rate_limited": 429,
    "upstream_error": 502,
    "unavailable": 503,
    "upstream_timeout": 504,
}


class GatewayError(Exception):
    """A refusal that the consumer sees as `{"error": code, "message": ..., ...}`.

    `reason` is a short machine-readable word (e.g. `expired`, `masked_field_query`);
    `headers` are extra response headers (`WWW-Authenticate`, `Retry-After`);
    `extra` are extra body fields (`incident_id`).
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.status = STATUS_BY_CODE[code]
        self.message = message
        self.reason = reason
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self, request_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.reason is not None:
            body["reason"] = self.reason
        body.update(self.extra)
        body["request_id"] = request_id
        return body


class ConfigError(Exception):
    """A config, catalog or policy file that cannot be used; the message names the key/line."""


class StateUnavailable(Exception):
    """The state backend cannot answer; callers must fail closed."""
