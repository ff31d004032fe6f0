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
3. `iss` is the configured issuer;
4. the token is no ID token (refused saying to send the access token), carries
   the claims we rely on (REQUIRED_CLAIMS), its `token_use` is "access" and its
   `client_id` the configured app client;
5. `exp` has not passed, and `iat` and `nbf`, when present, are not in the
   future, each with LEEWAY_SECONDS for clocks that differ.

Then the user must be in the admin group (`cognito:groups`), else `Forbidden`
(403). Missing settings raise settings.AuditConfigError (503), and signing keys
that cannot be fetched KeysUnavailable (503).

In AWS the signing keys are given at deploy (AUDIT_COGNITO_JWKS, the pool's
JWKS document): the Lambdas run in private subnets with no route to Cognito's
JWKS URL, and a user pool keeps its signing keys. A token signed with a key
not in that document is refused; a malformed document is a configuration
error (503). Without it (locally, against moto), signing keys are fetched
from the JWKS URL on first use and kept for the life of the process. A token
signed with a key id we do not hold makes us fetch them again (a pool could
publish a new key before signing with it), but at most once per
REFETCH_INTERVAL, failed fetches included: tokens with made-up key ids cannot
make us hammer Cognito.

Reasons are our own fixed words, safe to show: never the token, nor a claim's value.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from chalicelib import logs
from chalicelib.audit import settings

ALGORITHMS = ["RS256"]  # what Cognito signs with; the only algorithm we accept
LEEWAY_SECONDS = 30
REFETCH_INTERVAL = 60.0  # seconds between two JWKS fetches of one process, at least
JWKS_TIMEOUT = (2.0, 3.0)  # connect, read: a slow Cognito costs a request a few seconds at most
MAX_TOKEN_LENGTH = 8192  # Cognito's tokens are a few KB; anything longer is not one of them
REALM = "hosp-reliability"
# Claims the checks or the Principal rely on; Cognito's access tokens carry each of them.
REQUIRED_CLAIMS = ("iss", "sub", "exp", "token_use", "client_id", "username")
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


def require_admin(
    authorization_header: str | None, now: float | None = None, *, keys: SigningKeys | None = None
) -> Principal:
    """The caller, if the header holds a valid access token of an audit admin; raises otherwise.

    now: the time to check `exp` against (seconds since the epoch; default the
    clock's). keys: the signing keys (default the process's cache for the
    configured JWKS URL).
    """
    cognito = settings.cognito()
    if cognito.jwks:
        configured = configured_keys(cognito.jwks)  # a malformed document is a 503 before anything else
        keys = keys or configured
    else:
        _check_jwks_url(cognito.jwks_url)
        keys = keys or signing_keys(cognito.jwks_url)
    token = bearer_token(authorization_header)
    claims = verify_access_token(token, cognito, keys, time.time() if now is None else now)
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


def verify_access_token(token: str, cognito: settings.CognitoSettings, keys: SigningKeys, now: float) -> dict[str, Any]:
    """The token's claims once steps 2 to 5 of the module docstring hold; raises Unauthorized."""
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
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            issuer=cognito.issuer,
            # Times are checked below against `now`; access tokens have no audience.
            options={
                "require": ["iss"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise Unauthorized("the token's signature does not verify") from None
    except jwt.MissingRequiredClaimError:
        raise Unauthorized("the token has no iss claim") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("the token was issued by another user pool") from None
    except jwt.PyJWTError:
        raise Unauthorized("the token is malformed") from None
    # Before the other claims, which an ID token lacks, so that its sender learns what to send.
    if claims.get("token_use") == "id":
        raise Unauthorized("this is an ID token; send the access token instead")
    missing = [name for name in REQUIRED_CLAIMS if claims.get(name) is None]
    if missing:
        raise Unauthorized(f"the token has no {missing[0]} claim")
    if claims["token_use"] != "access":
        raise Unauthorized("the token is not an access token")
    if claims["client_id"] != cognito.client_id:
        raise Unauthorized("the token was issued to another app client")
    _check_times(claims, now)
    return claims


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in times.values()):
        raise Unauthorized("the token's times are not numbers")
    if times["exp"] <= now - LEEWAY_SECONDS:
        raise Unauthorized("the token has expired")
    if times.get("iat", now) > now + LEEWAY_SECONDS:
        raise Unauthorized("the token was issued in the future")
    if times.get("nbf", now) > now + LEEWAY_SECONDS:
        raise Unauthorized("the token is not valid yet")


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
    raise settings.AuditConfigError([f"{settings.AUDIT_COGNITO_JWKS_URL} must be an https URL (http on loopback only)"])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- signing keys ---------------------------------------------------------------------------------


def fetch_jwks(url: str) -> Any:
    """The JSON document at the JWKS URL; raises requests.RequestException or ValueError."""
    answer = requests.get(url, timeout=JWKS_TIMEOUT)
    answer.raise_for_status()
    return answer.json()


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document by key id; raises ValueError when there is none."""
    entries = document.get("keys") if isinstance(document, dict) else None
    keys = {}
    for entry in entries if isinstance(entries, list) else []:
        if not (isinstance(entry, dict) and entry.get("kty") == "RSA" and isinstance(entry.get("kid"), str)):
            continue
        if entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
        except jwt.PyJWTError:
            continue  # an unusable key: the others may still do
    if not keys:
        raise ValueError("the JWKS holds no RS256 signing key")
    return keys


class SigningKeys:
    """A user pool's public signing keys by key id, fetched from its JWKS URL and cached.

    fetch and clock are for tests: the fetcher of the JWKS document, and a
    monotonic clock in seconds.
    """

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], Any] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
        refetch_interval: float = REFETCH_INTERVAL,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._clock = clock
        self._refetch_interval = refetch_interval
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()  # chalice local serves requests in threads

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key of `kid`, None if the pool does not publish it; raises KeysUnavailable."""
        with self._lock:
            if kid not in self._keys and self._may_fetch():
                self._refresh()
            if not self._keys:
                raise KeysUnavailable("the user pool's signing keys could not be fetched; try again in a minute")
            return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._refetch_interval

    def _refresh(self) -> None:
        self._fetched_at = self._clock()  # before fetching: a failed fetch counts too
        try:
            keys = parse_jwks(self._fetch(self.url))
        except (requests.RequestException, ValueError) as exc:
            # The keys we hold, if any, stay: a Cognito hiccup must not lock out valid tokens.
            logs.warning("audit_jwks_fetch_failed", failure=type(exc).__name__)
            return
        logs.info("audit_jwks_fetched", keys=len(keys))
        self._keys = keys


class ConfiguredKeys(SigningKeys):
    """The signing keys of a JWKS document given at deploy: never fetched, never refreshed."""

    def __init__(self, keys: dict[str, jwt.PyJWK]) -> None:
        super().__init__(url="")
        self._keys = keys

    def get(self, kid: str) -> jwt.PyJWK | None:
        return self._keys.get(kid)


@functools.cache
def configured_keys(document: str) -> ConfiguredKeys:
    """The keys of the AUDIT_COGNITO_JWKS document; raises AuditConfigError when it holds none."""
    try:
        return ConfiguredKeys(parse_jwks(json.loads(document)))
    except ValueError:  # json.JSONDecodeError is one too
        raise settings.AuditConfigError(
            [f"{settings.AUDIT_COGNITO_JWKS} must be the user pool's JWKS document (JSON with RS256 keys)"]
        ) from None


@functools.cache
def signing_keys(url: str) -> SigningKeys:
    """The process's cache of the signing keys at `url`."""
    return SigningKeys(url)


def reset() -> None:
    """Forget the cached keys (tests that start a new user pool call this)."""
    signing_keys.cache_clear()
    configured_keys.cache_clear()
