"""Who may call GET /audit: the holder of a Cognito access token of the audit admins' group.

The route checks the token itself, with PyJWT and cryptography, so that the
same code decides in AWS, in `chalice local` and in the tests. Access tokens,
not ID tokens: an access token is what Cognito issues for calling an API, and
it names the app client it was issued to (`client_id`; ID tokens carry `aud`).

`require_admin` checks, in this order, and refuses with `Unauthorized` (401)
at the first failure:

1. an `Authorization: Bearer <token>` header;
2. the token's RS256 signature, by a key of the pool's JWKS. The algorithm is
   ours, never the token header's: `none`, HS256 (with the public key as the
   HMAC secret) and any other algorithm are refused;
3. PyJWT's checks of the claims (`jwt.decode`): the claims it must find
   (PYJWT_REQUIRED), `iss` is the configured issuer, `exp` has not passed, and
   `iat` and `nbf`, when present, are not in the future, each with
   LEEWAY_SECONDS for clocks that differ. Before them, `exp`, `iat` and `nbf`
   must be finite JSON numbers: PyJWT reads a time with int(), which takes the
   string "1800000000" and `true` as times (it does refuse NaN and the
   infinities, which Python's JSON reads; we refuse them first, with the same
   words as any other time that is not a number);
4. the token is no ID token (refused saying to send the access token), carries
   the other claims we rely on (REQUIRED_CLAIMS), its `token_use` is "access"
   and its `client_id` the configured app client.

Then the user must be in the admin group (`cognito:groups`), else `Forbidden`
(403), which names the user. Missing settings raise settings.AuditConfigError
(503), and signing keys that cannot be fetched KeysUnavailable (503).

In AWS the signing keys are given at deploy (AUDIT_COGNITO_JWKS, the pool's
JWKS document, read with PyJWT's PyJWKSet): the Lambdas run in private subnets
with no route to Cognito's JWKS URL, and a user pool keeps its signing keys. A
token signed with a key not in that document is refused; a malformed document
is a configuration error (503). Without it (locally, against moto), PyJWT's
PyJWKClient fetches the keys from the JWKS URL on first use and keeps them for
the life of the process. A token signed with a key id it does not hold makes it
fetch them again (a pool could publish a new key before signing with it), but
at most once per REFETCH_INTERVAL (its cooldown); FetchedKeys adds the same
pause after a failed fetch, during which the keys held still serve: tokens with
made-up key ids cannot make us hammer Cognito, up or down.

Reasons are our own fixed words, safe to show: never the token, nor a claim's value.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from chalicelib import constants, logs
from chalicelib.audit import settings

ALGORITHMS = ["RS256"]  # what Cognito signs with; the only algorithm we accept
LEEWAY_SECONDS = 30
REFETCH_INTERVAL = 60.0  # seconds between two JWKS fetches of one process, at least
JWKS_TIMEOUT = 3.0  # seconds: a slow Cognito costs a request a few seconds at most
MAX_TOKEN_LENGTH = 8192  # Cognito's tokens are a few KB; anything longer is not one of them
REALM = constants.APP_NAME
# Claims the checks or the Principal rely on; Cognito's access tokens carry each of them.
REQUIRED_CLAIMS = ("iss", "sub", "exp", "token_use", "client_id", "username")
# Those PyJWT requires; an ID token has them too, so that its sender hears what to send instead.
PYJWT_REQUIRED = ["iss", "sub", "exp", "token_use"]
TIME_CLAIMS = ("exp", "iat", "nbf")
GROUPS_CLAIM = "cognito:groups"


@dataclass(frozen=True)
class Principal:
    """Who called, as the verified token says."""

    username: str
    sub: str
    groups: tuple[str, ...]


class AuthError(Exception):
    """A request the audit route refuses; `reason` is safe to show and never holds the token."""

    status = 401

    def __init__(self, reason: str, error: str | None = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error  # the RFC 6750 error code of the WWW-Authenticate header, if any

    @property
    def www_authenticate(self) -> str:
        """The WWW-Authenticate header value of the answer (RFC 6750, section 3)."""
        value = f'Bearer realm="{REALM}"'
        if self.error:
            value += f', error="{self.error}", error_description="{_quotable(self.reason)}"'
        return value


class Unauthorized(AuthError):
    """No valid access token of our user pool and app client (401)."""


class Forbidden(AuthError):
    """A valid token of a user outside the admin group (403); `caller` is who the token says."""

    status = 403

    def __init__(self, reason: str, caller: Principal) -> None:
        super().__init__(reason, error="insufficient_scope")
        self.caller = caller


class KeysUnavailable(RuntimeError):
    """The pool's signing keys could not be fetched (the route answers 503)."""


def require_admin(authorization_header: str | None, *, keys: SigningKeys | None = None) -> Principal:
    """The caller, if the header holds a valid access token of an audit admin; raises otherwise.

    keys: the signing keys (default the configured JWKS document's, else the
    process's cache of the configured JWKS URL's). Times are checked against the clock.
    """
    cognito = settings.cognito()
    if cognito.jwks:
        configured = configured_keys(cognito.jwks)  # a malformed document is a 503 before anything else
        keys = keys or configured
    else:
        _check_jwks_url(cognito.jwks_url)
        keys = keys or fetched_keys(cognito.jwks_url)
    token = bearer_token(authorization_header)
    claims = verify_access_token(token, cognito, keys)
    principal = _principal(claims)
    if cognito.admin_group not in principal.groups:
        raise Forbidden("the user is not in the group that may read the audit trail", principal)
    return principal


def bearer_token(authorization_header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; raises Unauthorized."""
    scheme, _, token = (authorization_header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        # No error code: the client may not know yet that this route wants a bearer token (RFC 6750, 3.1).
        raise Unauthorized("send an Authorization: Bearer header with a Cognito access token", error=None)
    token = token.strip()
    if not token or len(token) > MAX_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise Unauthorized("the bearer credentials are not one token")
    return token


class _TimesNotNumbers(jwt.DecodeError):
    """A time claim that is not a JSON number."""


class _AccessTokenJWT(jwt.PyJWT):
    """PyJWT's decoding, with the time claims' JSON type checked before PyJWT checks their values."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        # Called once the signature verified, before PyJWT validates the claims.
        payload = super()._decode_payload(decoded)
        if not all(_is_time(payload[name]) for name in TIME_CLAIMS if name in payload):
            raise _TimesNotNumbers("exp, iat or nbf is not a finite number")
        return payload


_DECODER = _AccessTokenJWT()


def _is_time(value: Any) -> bool:
    """A finite JSON number: not a string, not true or false, not NaN or an infinity."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def verify_access_token(token: str, cognito: settings.CognitoSettings, keys: SigningKeys) -> dict[str, Any]:
    """The token's claims once steps 2 to 4 of the module docstring hold; raises Unauthorized."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthorized("the token is not a JWT") from None
    if header.get("alg") not in ALGORITHMS:
        raise Unauthorized("the token is not signed with RS256")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise Unauthorized("the token is not signed with a key of the user pool")
    claims = _decoded(token, key, cognito.issuer)
    # Before the other claims, which an ID token lacks, so that its sender learns what to send.
    if claims["token_use"] == "id":
        raise Unauthorized("this is an ID token; send the access token instead")
    missing = [name for name in REQUIRED_CLAIMS if claims.get(name) is None]
    if missing:
        raise Unauthorized(f"the token has no {missing[0]} claim")
    if claims["token_use"] != "access":
        raise Unauthorized("the token is not an access token")
    if claims["client_id"] != cognito.client_id:
        raise Unauthorized("the token was issued to another app client")
    return claims


def _decoded(token: str, key: jwt.PyJWK, issuer: str) -> dict[str, Any]:
    """The claims once PyJWT verified the signature, the issuer and the times; raises Unauthorized."""
    try:
        return _DECODER.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            # Access tokens have no audience: the app client is checked on client_id.
            options={"require": PYJWT_REQUIRED, "verify_aud": False},
        )
    except jwt.InvalidSignatureError:
        raise Unauthorized("the token's signature does not verify") from None
    except jwt.MissingRequiredClaimError as missing:
        raise Unauthorized(f"the token has no {missing.claim} claim") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("the token was issued by another user pool") from None
    except _TimesNotNumbers:
        raise Unauthorized("the token's times are not numbers") from None
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired") from None
    except jwt.ImmatureSignatureError as early:
        # PyJWT says which claim: "The token is not yet valid (iat)", or "(nbf)".
        if str(early).endswith("(iat)"):
            raise Unauthorized("the token was issued in the future") from None
        raise Unauthorized("the token is not valid yet") from None
    except (InvalidSubjectError, InvalidJTIError):
        raise Unauthorized("the token's claims are malformed") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is malformed") from None


def _principal(claims: Mapping[str, Any]) -> Principal:
    username, sub, groups = claims["username"], claims["sub"], claims.get(GROUPS_CLAIM, [])
    if not (isinstance(username, str) and isinstance(sub, str) and isinstance(groups, list)):
        raise Unauthorized("the token's claims are malformed")
    if not all(isinstance(group, str) for group in groups):
        raise Unauthorized("the token's claims are malformed")
    return Principal(username=username, sub=sub, groups=tuple(groups))


def _quotable(text: str) -> str:
    """`text` as an RFC 6750 error_description may hold it: printable ASCII without quote or backslash."""
    return "".join(c for c in text if " " <= c <= "~" and c not in '"\\')


def _check_jwks_url(url: str) -> None:
    """Keys fetched over plain HTTP could be swapped on the way: only https, or http on loopback (moto)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
        return
    raise settings.AuditConfigError(
        [f"{constants.AUDIT_COGNITO_JWKS_URL} must be an https URL (http on loopback only)"]
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- signing keys ---------------------------------------------------------------------------------


class SigningKeys(Protocol):
    def get(self, kid: str) -> jwt.PyJWK | None:
        """The RS256 signing key of `kid`, None if the pool does not publish one; may raise KeysUnavailable."""
        ...


def _signs_rs256(key: jwt.PyJWK | None) -> jwt.PyJWK | None:
    """`key` if it is an RS256 signature key with a key id, else None."""
    if key is None or not isinstance(key.key_id, str):
        return None
    return key if key.algorithm_name == "RS256" and key.public_key_use in ("sig", None) else None


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document by key id; raises ValueError when there is none.

    PyJWKSet reads the document and skips the keys it cannot use; of the rest,
    only RS256 signature keys count (an `alg` other than RS256, `use` other than
    "sig", a symmetric key: skipped).
    """
    try:
        found = jwt.PyJWKSet.from_dict(document).keys if isinstance(document, dict) else []
    except jwt.PyJWTError:
        found = []
    keys = {str(key.key_id): key for key in found if _signs_rs256(key)}
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    return keys


class ConfiguredKeys:
    """The signing keys of a JWKS document given at deploy: never fetched, never refreshed."""

    def __init__(self, keys: dict[str, jwt.PyJWK]) -> None:
        self._keys = keys

    def get(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


class FetchedKeys:
    """A user pool's signing keys at its JWKS URL, fetched and cached by PyJWT's PyJWKClient.

    The client keeps the document for the life of the process and fetches it again
    for a key id it does not hold, at most once per `refetch_interval` after a
    fetch (its cooldown). A fetch that fails (Cognito unreachable, an error status,
    no usable document) makes us ask no more for `refetch_interval`: meanwhile the
    keys held, if any, still serve; without any the route answers 503.
    """

    def __init__(self, url: str, refetch_interval: float = REFETCH_INTERVAL) -> None:
        self.client = jwt.PyJWKClient(url, lifespan=math.inf, timeout=JWKS_TIMEOUT, cooldown_duration=refetch_interval)
        self._refetch_interval = refetch_interval
        self._failed_at = -math.inf
        self._lock = threading.Lock()  # chalice local serves requests in threads

    def get(self, kid: str) -> jwt.PyJWK | None:
        with self._lock:
            if time.monotonic() - self._failed_at < self._refetch_interval:
                return self._held(kid)
            try:
                return _signs_rs256(self.client.get_signing_key(kid))
            except jwt.PyJWKClientConnectionError as failure:
                return self._failed(kid, failure)
            except jwt.PyJWKClientError as failure:
                if self._held_keys() is not None:
                    return None  # the keys are there, and none has this id
                return self._failed(kid, failure)  # the first answer was no JWKS
            except (jwt.PyJWKSetError, ValueError) as failure:  # a JWKS without usable keys; not JSON at all
                return self._failed(kid, failure)

    def _failed(self, kid: str, failure: Exception) -> jwt.PyJWK | None:
        self._failed_at = time.monotonic()
        logs.warning("audit_jwks_fetch_failed", failure=type(failure).__name__)
        return self._held(kid)

    def _held_keys(self) -> jwt.PyJWKSet | None:
        return self.client.jwk_set_cache.get() if self.client.jwk_set_cache is not None else None

    def _held(self, kid: str) -> jwt.PyJWK | None:
        """The key of `kid` among those last fetched; KeysUnavailable when none were."""
        held = self._held_keys()
        if held is None:
            raise KeysUnavailable("the user pool's signing keys could not be fetched; try again in a minute")
        return _signs_rs256(next((key for key in held.keys if key.key_id == kid), None))


@functools.cache
def configured_keys(document: str) -> ConfiguredKeys:
    """The keys of the AUDIT_COGNITO_JWKS document; raises AuditConfigError when it holds none."""
    try:
        return ConfiguredKeys(parse_jwks(json.loads(document)))
    except ValueError:  # json.JSONDecodeError is one too
        raise settings.AuditConfigError(
            [f"{constants.AUDIT_COGNITO_JWKS} must be the user pool's JWKS document (JSON with RS256 keys)"]
        ) from None


@functools.cache
def fetched_keys(url: str) -> FetchedKeys:
    """The process's cache of the signing keys at `url`."""
    return FetchedKeys(url)


def reset() -> None:
    """Forget the cached keys (tests that start a new user pool call this)."""
    fetched_keys.cache_clear()
    configured_keys.cache_clear()
