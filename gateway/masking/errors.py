"""The masking failure: a response that cannot be safely desensitised is never passed on."""

from __future__ import annotations

from gateway.errors import GatewayError


class MaskingError(Exception):
    """An upstream response that cannot be masked safely (fail closed).

    `reason` is a short machine word (`unsupported_content_type`, `malformed_body`, ...);
    `code` is the public error code it maps to: `upstream_error` (502) or
    `payload_too_large` (413, for bodies over the configured limits when so configured).
    """

    def __init__(self, reason: str, message: str, *, code: str = "upstream_error") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code

    def gateway_error(self) -> GatewayError:
        """The consumer-facing error for this failure."""
        return GatewayError(self.code, self.message, reason=self.reason)
