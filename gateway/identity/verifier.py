"""Bearer token verification with PyJWT: issuer keys, claim checks, the principal, caching."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import aiohttp
import jwt
import orjson
from jwt import exceptions as jwt_errors
from jwt.utils import base64url_decode

from gateway.errors import GatewayError
from gateway.identity.cache import TokenCache
from gateway.identity.config import IdentityConfig, IssuerConfig
from gateway.identity.jwks import JwksSource
from gateway.identity.keys import HMAC_ALGORITHMS, VerificationKey, load_pem_public_key
from gateway.identity.principal import Principal
from gateway.identity.revocation import RevocationList

_PYJWT = jwt.PyJWT()


def refusal(reason: str, message: str, realm: str = "datagate") -> GatewayError:
    """A 401 with the RFC 6750 challenge (no error code when no token was sent)."""
    challenge = f'Bearer realm="{realm}"'
    if reason != "missing":
        challenge += ', error="invalid_token"'
    return GatewayError(
        "unauthenticated", message, reason=reason, headers={"WWW-Authenticate": challenge}
    )


class _Issuer:
    """One configured issuer with its keys loaded."""

    def __init__(self, cfg: IssuerConfig, jwks: JwksSource | None) -> None:
        self.cfg = cfg
        self.algorithms = frozenset(cfg.algorithms)
        self.audiences = list(cfg.audiences)
        self.secret = cfg.secret.reveal().encode() if cfg.secret is not None else None
        self.pem_keys = [
            VerificationKey(load_pem_public_key(pem.file, pem.file.name), pem.kid)
            for pem in cfg.public_keys
        ]
        self.jwks = jwks
        self.options: Any = {
            # Times are checked against the injected clock, not PyJWT's.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "require": list(cfg.required_claims),
            "enforce_minimum_key_length": True,
        }

    def candidates(self, alg: str, kid: str | None) -> list[Any]:
        if alg in HMAC_ALGORITHMS:
            return [self.secret] if self.secret is not None else []
        keys = self.pem_keys + (self.jwks.keys if self.jwks is not None else [])
        # A token without a kid may be signed by any fitting key; a key published without
        # a kid fits any token; otherwise the kids must be equal.
        return [k.key for k in keys if (kid is None or k.kid in (None, kid)) and k.fits(alg)]


class Verifier:
    """Turns a bearer token into a verified `Principal`, or refuses with a reason.

    `revocations` None means no deny list (offline tools); the gateway always passes one.
    Call `start()` before use (fetches JWKS URLs) and `close()` at shutdown.
    """

    def __init__(
        self,
        cfg: IdentityConfig,
        revocations: RevocationList | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cfg = cfg
        self._revocations = revocations
        self._clock = clock
        self._cache = TokenCache(cfg.token_cache_size)
        self._max_length = cfg.max_token_length
        self._realm = cfg.realm
        self._session: aiohttp.ClientSession | None = None
        self._refreshes: set[asyncio.Task[bool]] = set()
        self._issuers: dict[str, _Issuer] = {}
        for issuer in cfg.issuers:
            jwks = None
            if issuer.jwks is not None:
                jwks = JwksSource(issuer.jwks, clock=clock, on_keys_removed=self._cache.clear)
            self._issuers[issuer.issuer] = _Issuer(issuer, jwks)

    @property
    def realm(self) -> str:
        return self._realm

    @property
    def purpose_header(self) -> str:
        return self._cfg.purpose_header

    @property
    def cache(self) -> TokenCache:
        return self._cache

    def jwks(self, issuer: str) -> JwksSource | None:
        return self._issuers[issuer].jwks

    async def start(self) -> None:
        sources = [i.jwks for i in self._issuers.values() if i.jwks is not None]
        if any(i.cfg.jwks is not None and i.cfg.jwks.url for i in self._issuers.values()):
            self._session = aiohttp.ClientSession()
        for source in sources:
            await source.start(self._session)

    async def close(self) -> None:
        for task in list(self._refreshes):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def settle(self) -> None:
        """Wait for background key-set refreshes started by `verify`."""
        while self._refreshes:
            await asyncio.gather(*self._refreshes, return_exceptions=True)

    async def authenticate(self, authorization: str | None) -> Principal:
        """Verify the token in an `Authorization` header value."""
        return await self.verify(bearer_token(authorization, self._realm))

    async def verify(self, token: str) -> Principal:
        if len(token) > self._max_length:
            self._refuse("malformed", f"the token is longer than {self._max_length} bytes")
        now = self._clock()
        principal = self._cache.get(token, now)
        if principal is None:
            principal, valid_from, valid_until = await self._verify_uncached(token, now)
            self._check_revoked(principal)
            self._cache.put(token, principal, valid_from, valid_until)
        else:
            self._check_revoked(principal)
        return principal

    def _check_revoked(self, principal: Principal) -> None:
        if self._revocations is not None:
            self._revocations.check(principal.token_id)

    def _refuse(self, reason: str, message: str) -> NoReturn:
        raise refusal(reason, message, self._realm)

    async def _verify_uncached(self, token: str, now: float) -> tuple[Principal, float, float]:
        """The principal, and from when until when the token is valid (leeway included)."""
        header, unverified = self._split(token)
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            self._refuse("unknown_issuer", "the token's issuer is not trusted")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            self._refuse("bad_signature", "the token's algorithm is not allowed for its issuer")
        kid = header.get("kid")
        if "kid" in header and not isinstance(kid, str):  # RFC 7515: a string, never null
            self._refuse("malformed", "the token's kid is not a string")
        if "crit" in header or "b64" in header:
            self._refuse("malformed", "the token uses JWS extensions (crit, b64) not accepted here")
        # Key hints in the header (jwk, jku, x5u, x5c) are never followed: keys come only
        # from the config.
        keys = await self._keys(issuer, alg, kid)
        payload = self._decode(token, issuer, alg, keys)
        leeway = issuer.cfg.leeway
        valid_from, exp = self._check_times(payload, leeway, now)
        return self._principal(payload, issuer), valid_from - leeway, exp + leeway

    def _split(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The header and the unverified payload, read only to choose the issuer's keys."""
        parts = token.split(".")
        if len(parts) != 3:
            self._refuse("malformed", "the token is not a signed JWT (header.payload.signature)")
        try:
            header = orjson.loads(base64url_decode(parts[0]))
            payload = orjson.loads(base64url_decode(parts[1]))
        except (binascii.Error, ValueError, UnicodeError):
            self._refuse("malformed", "the token cannot be decoded")
        if not isinstance(header, dict) or not isinstance(payload, dict):
            self._refuse("malformed", "the token's header or payload is not a JSON object")
        return header, payload

    async def _keys(self, issuer: _Issuer, alg: str, kid: str | None) -> list[Any]:
        keys = issuer.candidates(alg, kid)
        source = issuer.jwks
        if source is None or alg in HMAC_ALGORITHMS:
            if not keys:
                self._refuse("bad_signature", "no key of the issuer fits the token")
            return keys
        if not keys:
            # Maybe the issuer rotated its keys: refresh (bounded), then look again.
            await source.refresh()
            keys = issuer.candidates(alg, kid)
        elif source.stale():
            self._refresh_in_background(source)
        if not keys:
            if source.loaded_at is None and not issuer.pem_keys:
                raise GatewayError(
                    "unavailable",
                    "the token issuer's keys cannot be fetched",
                    reason="jwks_unavailable",
                )
            self._refuse("bad_signature", "no key of the issuer matches the token's kid")
        return keys

    def _refresh_in_background(self, source: JwksSource) -> None:
        if self._refreshes:
            return
        task = asyncio.create_task(source.refresh())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    def _decode(self, token: str, issuer: _Issuer, alg: str, keys: list[Any]) -> dict[str, Any]:
        for i, key in enumerate(keys):
            try:
                return _PYJWT.decode(
                    token,
                    key,
                    algorithms=[alg],
                    audience=issuer.audiences,
                    issuer=issuer.cfg.issuer,
                    options=issuer.options,
                )
            except jwt_errors.InvalidSignatureError:
                if i == len(keys) - 1:
                    self._refuse("bad_signature", "the token's signature is not valid")
            except jwt_errors.MissingRequiredClaimError as exc:
                if exc.claim == "aud":
                    self._refuse("wrong_audience", "the token has no audience")
                self._refuse("bad_claims", f"the token lacks the required claim {exc.claim!r}")
            except jwt_errors.InvalidAudienceError:
                self._refuse("wrong_audience", "the token is not meant for this gateway")
            except jwt_errors.InvalidIssuerError:
                self._refuse("unknown_issuer", "the token's issuer is not trusted")
            except (jwt_errors.InvalidSubjectError, jwt_errors.InvalidJTIError) as exc:
                self._refuse("bad_claims", f"the token's claims are not valid: {exc}")
            except (jwt_errors.InvalidAlgorithmError, jwt_errors.InvalidKeyError):
                self._refuse("bad_signature", "the token's algorithm or key is not acceptable")
            except (jwt_errors.PyJWTError, ValueError, TypeError):
                self._refuse("malformed", "the token cannot be decoded")
        self._refuse("bad_signature", "no key of the issuer fits the token")

    def _check_times(
        self, payload: Mapping[str, Any], leeway: float, now: float
    ) -> tuple[float, float]:
        """Check exp/nbf/iat against the clock; return (the latest of nbf and iat, exp)."""
        exp = _number(payload.get("exp"))
        if exp is None:
            self._refuse("bad_claims", "the token's exp is not a number")
        if now >= exp + leeway:
            self._refuse("expired", "the token has expired")
        valid_from = -math.inf
        for claim in ("nbf", "iat"):
            if claim not in payload:
                continue
            value = _number(payload[claim])
            if value is None:
                self._refuse("bad_claims", f"the token's {claim} is not a number")
            if value > now + leeway:
                self._refuse("not_yet_valid", f"the token is not valid yet ({claim})")
            valid_from = max(valid_from, value)
        return valid_from, exp

    def _principal(self, claims: Mapping[str, Any], issuer: _Issuer) -> Principal:
        """Build the principal from verified claims only, through the issuer's claim names."""
        names = issuer.cfg.claims
        clearance = claims.get(names.clearance)
        if type(clearance) is not int or not 1 <= clearance <= 4:
            self._refuse("bad_claims", f"claim {names.clearance!r} must be an integer 1..4")
        client_id = None
        for name in names.client_id:
            if claims.get(name) is not None:
                client_id = self._optional_text(claims, name)
                break
        return Principal(
            subject=self._required_text(claims, names.subject),
            department=self._required_text(claims, names.department),
            clearance=clearance,
            roles=self._texts(claims, names.roles),
            token_id=self._optional_text(claims, names.jti),
            client_id=client_id,
            issuer=issuer.cfg.issuer,
            purposes=self._texts(claims, names.purposes),
            purpose=self._optional_text(claims, names.purpose),
            expires_at=float(claims["exp"]),
            cert_thumbprint=self._confirmation(claims.get("cnf")),
        )

    def _confirmation(self, cnf: Any) -> str | None:
        """The certificate thumbprint a token is bound to (RFC 8705 `cnf.x5t#S256`). Other
        confirmation methods (DPoP's `jkt`...) cannot be checked here: such tokens are refused."""
        if cnf is None:
            return None
        thumbprint = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
        if not isinstance(thumbprint, str) or not thumbprint:
            self._refuse(
                "bad_claims", "the token's cnf claim must hold an x5t#S256 certificate thumbprint"
            )
        return thumbprint

    def _required_text(self, claims: Mapping[str, Any], name: str) -> str:
        value = claims.get(name)
        if not isinstance(value, str) or not value:
            self._refuse("bad_claims", f"claim {name!r} must be a non-empty string")
        return value

    def _optional_text(self, claims: Mapping[str, Any], name: str) -> str | None:
        return None if claims.get(name) is None else self._required_text(claims, name)

    def _texts(self, claims: Mapping[str, Any], name: str) -> frozenset[str]:
        value = claims.get(name)
        if value is None:
            return frozenset()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self._refuse("bad_claims", f"claim {name!r} must be a list of strings")
        return frozenset(value)


def bearer_token(authorization: str | None, realm: str = "datagate") -> str:
    """The token from an `Authorization: Bearer <token>` value (RFC 6750 §2.1)."""
    if not authorization:
        raise refusal("missing", "a bearer token is required", realm)
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise refusal("missing", "a bearer token is required (Authorization: Bearer ...)", realm)
    if len(token.split(maxsplit=1)) != 1:  # any whitespace inside, checked in C
        raise refusal("malformed", "the bearer token contains whitespace", realm)
    return token


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
