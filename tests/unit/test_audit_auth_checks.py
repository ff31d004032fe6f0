"""chalicelib/audit/auth.py without Cognito: the header, the claims, the keys.

Tokens here are signed with an RSA key made by the test, with times around the
clock's (PyJWT checks them against it). The keys fetched from a JWKS URL come
from a server on loopback that counts its answers and can fail.
tests/functional/test_audit_auth.py checks the same code against tokens of moto's Cognito.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib import constants
from chalicelib.audit import auth, settings

ISSUER = "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test"
CLIENT_ID = "test-client"
KID = "test-key"
ENVIRONMENT = {
    constants.AUDIT_COGNITO_ISSUER: ISSUER,
    constants.AUDIT_COGNITO_JWKS_URL: f"{ISSUER}/.well-known/jwks.json",
    constants.AUDIT_COGNITO_CLIENT_ID: CLIENT_ID,
}
# Seconds a key cache waits between fetches in these tests (REFETCH_INTERVAL in the route).
INTERVAL = 1.0
# Seconds on either side of a time limit: a test takes milliseconds, a loaded machine a few seconds at most.
MARGIN = 10


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = new_key()


def public_jwk(key: rsa.RSAPrivateKey, kid: str = KID, **fields: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig", **fields}


def now() -> int:
    return int(time.time())


def access_claims(**changes: Any) -> dict[str, Any]:
    """An access token's claims as Cognito writes them, issued now; a change of None removes the claim."""
    issued = now()
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "0b5e6f2a-user",
        "client_id": CLIENT_ID,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": issued,
        "iat": issued,
        "exp": issued + 3600,
        "jti": "a-token-id",
        "username": "audit-admin",
        "cognito:groups": [constants.ADMIN_GROUP],
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def token(claims: dict[str, Any] | None = None, key: rsa.RSAPrivateKey = KEY, kid: str = KID) -> str:
    return jwt.encode(access_claims() if claims is None else claims, key, algorithm="RS256", headers={"kid": kid})


class JwksServer:
    """A JWKS URL on loopback: answers {"keys": keys}, or 503 while `failing`, or `body` if set; counts its answers."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self.body: bytes | None = None
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                body = jwks.body if jwks.body is not None else json.dumps({"keys": jwks.keys}).encode()
                self.send_response(503 if jwks.failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/pool/.well-known/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def signing_keys(self) -> auth.FetchedKeys:
        return auth.FetchedKeys(self.url, refetch_interval=INTERVAL)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer(public_jwk(KEY))
    yield server
    server.close()


def wait_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in constants.AUDIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    auth.reset()
    yield
    auth.reset()


def check(authorization: str | None) -> auth.Principal:
    return auth.require_admin(authorization, keys=auth.ConfiguredKeys(auth.parse_jwks({"keys": [public_jwk(KEY)]})))


def refusal(authorization: str | None) -> auth.AuthError:
    with pytest.raises(auth.AuthError) as refused:
        check(authorization)
    if authorization:
        _, _, sent = authorization.partition(" ")
        shown = f"{refused.value} {refused.value.www_authenticate}"
        assert not sent or sent not in shown, "the token must never be shown"
    return refused.value


# --- the header ---------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Bearer abc.def.ghi", "bearer abc.def.ghi", "  Bearer   abc.def.ghi  "])
def test_the_token_is_taken_from_a_bearer_header(header: str) -> None:
    assert auth.bearer_token(header) == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   ", "Basic dGVzdDpwdw==", "Token abc.def.ghi"])
def test_without_bearer_credentials_the_answer_only_asks_for_them(header: str | None) -> None:
    with pytest.raises(auth.Unauthorized) as refused:
        auth.bearer_token(header)

    assert refused.value.status == 401
    assert refused.value.www_authenticate == f'Bearer realm="{constants.APP_NAME}"'  # no error code (RFC 6750, 3.1)
    assert "Bearer" in refused.value.reason


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer  ", "Bearer a b", "Bearer a\tb", "Bearer " + "a" * (auth.MAX_TOKEN_LENGTH + 1)]
)
def test_bearer_credentials_that_are_not_one_token_are_an_invalid_token(header: str) -> None:
    with pytest.raises(auth.Unauthorized) as refused:
        auth.bearer_token(header)

    assert refused.value.error == "invalid_token"


def test_the_www_authenticate_header_follows_rfc_6750() -> None:
    invalid = auth.Unauthorized("the token has expired")
    forbidden = auth.Forbidden("not in the group", auth.Principal("someone", "sub", ()))

    assert invalid.www_authenticate == (
        f'Bearer realm="{constants.APP_NAME}", error="invalid_token", error_description="the token has expired"'
    )
    assert (forbidden.status, forbidden.error) == (403, "insufficient_scope")
    assert 'error="insufficient_scope"' in forbidden.www_authenticate
    # error_description takes printable ASCII without quote or backslash.
    assert auth.Unauthorized('a "quoted"\\ reason\n\u00e9').www_authenticate.endswith(
        'error_description="a quoted reason"'
    )


# --- the claims -------------------------------------------------------------------------------------


def test_an_access_token_of_an_admin_gives_the_principal(configured: None) -> None:
    principal = check(f"Bearer {token()}")

    assert principal == auth.Principal(username="audit-admin", sub="0b5e6f2a-user", groups=(constants.ADMIN_GROUP,))


@pytest.mark.parametrize("groups", [["audit-viewers"], [], None])
def test_a_valid_token_of_someone_outside_the_admin_group_is_forbidden(configured: None, groups: Any) -> None:
    with pytest.raises(auth.Forbidden):
        check(f"Bearer {token(access_claims(**{'cognito:groups': groups}))}")


def test_the_admin_group_is_a_setting(configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.AUDIT_ADMIN_GROUP, "auditors")
    admin_token = token(access_claims(**{"cognito:groups": [constants.ADMIN_GROUP]}))
    auditor_token = token(access_claims(**{"cognito:groups": ["staff", "auditors"]}))

    with pytest.raises(auth.Forbidden):
        check(f"Bearer {admin_token}")
    assert check(f"Bearer {auditor_token}").groups == ("staff", "auditors")


def test_expiry_allows_the_leeway_and_no_more(configured: None) -> None:
    just_expired = token(access_claims(exp=now() - auth.LEEWAY_SECONDS + MARGIN))
    expired = token(access_claims(exp=now() - auth.LEEWAY_SECONDS - MARGIN))

    assert check(f"Bearer {just_expired}").username == "audit-admin"
    assert refusal(f"Bearer {expired}").reason == "the token has expired"


@pytest.mark.parametrize(("claim", "reason"), [("iat", "issued in the future"), ("nbf", "not valid yet")])
def test_a_token_from_the_future_is_refused_beyond_the_leeway(configured: None, claim: str, reason: str) -> None:
    early = f"Bearer {token(access_claims(**{claim: now() + auth.LEEWAY_SECONDS + MARGIN}))}"
    slightly_early = f"Bearer {token(access_claims(**{claim: now() + auth.LEEWAY_SECONDS - MARGIN}))}"

    assert reason in refusal(early).reason
    assert check(slightly_early).username == "audit-admin"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "1800000000", True, False, None, [1], {}])
def test_a_time_that_is_not_a_finite_number_is_refused(configured: None, claim: str, value: Any) -> None:
    claims = access_claims()
    claims[claim] = value  # None too: null is no time

    refused = refusal(f"Bearer {token(claims)}")

    assert isinstance(refused, auth.Unauthorized)
    assert refused.reason == "the token's times are not numbers"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
def test_a_time_with_a_fraction_is_a_time(configured: None, claim: str) -> None:
    late = {"exp": now() + 3600.5, "iat": now() - 0.5, "nbf": now() - 0.5}[claim]

    assert check(f"Bearer {token(access_claims(**{claim: late}))}").username == "audit-admin"


@pytest.mark.parametrize("claim", auth.REQUIRED_CLAIMS)
def test_a_token_without_a_required_claim_is_refused(configured: None, claim: str) -> None:
    assert refusal(f"Bearer {token(access_claims(**{claim: None}))}").reason == f"the token has no {claim} claim"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"token_use": "id", "aud": CLIENT_ID, "client_id": None},
            "this is an ID token; send the access token instead",
        ),
        ({"token_use": "refresh"}, "the token is not an access token"),
        ({"client_id": "another-client"}, "the token was issued to another app client"),
        ({"iss": f"{ISSUER}-other"}, "the token was issued by another user pool"),
        ({"exp": str(now() + 3600)}, "the token's times are not numbers"),
        ({"exp": True}, "the token's times are not numbers"),
        ({"exp": math.nan}, "the token's times are not numbers"),
        ({"sub": 7}, "the token's claims are malformed"),
        ({"username": 7}, "the token's claims are malformed"),
        ({"cognito:groups": constants.ADMIN_GROUP}, "the token's claims are malformed"),
        ({"cognito:groups": [[constants.ADMIN_GROUP]]}, "the token's claims are malformed"),
    ],
)
def test_a_signed_token_with_wrong_claims_is_refused(configured: None, changes: dict[str, Any], reason: str) -> None:
    refused = refusal(f"Bearer {token(access_claims(**changes))}")

    assert isinstance(refused, auth.Unauthorized)
    assert refused.reason == reason
    assert refused.error == "invalid_token"


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(configured: None) -> None:
    assert refusal(f"Bearer {token(key=new_key())}").reason == "the token's signature does not verify"


def test_a_token_whose_header_names_no_key_is_refused(configured: None) -> None:
    unnamed = jwt.encode(access_claims(), KEY, algorithm="RS256")

    assert refusal(f"Bearer {unnamed}").reason == "the token is not signed with a key of the user pool"


def test_missing_settings_are_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in constants.AUDIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(settings.AuditConfigError) as missing:
        check(f"Bearer {token()}")
    assert constants.AUDIT_COGNITO_ISSUER in str(missing.value)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cognito-idp.eu-west-2.amazonaws.com/pool/.well-known/jwks.json", True),
        ("http://127.0.0.1:5000/pool/.well-known/jwks.json", True),
        ("http://localhost:5000/pool/.well-known/jwks.json", True),
        ("http://[::1]:5000/pool/.well-known/jwks.json", True),
        ("http://cognito-idp.eu-west-2.amazonaws.com/pool/.well-known/jwks.json", False),
        ("http://10.0.0.5/jwks.json", False),
        ("ftp://127.0.0.1/jwks.json", False),
    ],
)
def test_keys_come_over_https_or_from_loopback(
    configured: None, monkeypatch: pytest.MonkeyPatch, url: str, allowed: bool
) -> None:
    monkeypatch.setenv(constants.AUDIT_COGNITO_JWKS_URL, url)

    if allowed:
        assert check(f"Bearer {token()}").username == "audit-admin"
    else:
        with pytest.raises(settings.AuditConfigError, match=constants.AUDIT_COGNITO_JWKS_URL):
            check(f"Bearer {token()}")


# --- the signing keys ---------------------------------------------------------------------------------


def test_the_jwks_gives_its_rs256_signing_keys_by_kid() -> None:
    other = new_key()
    document = {
        "keys": [
            public_jwk(KEY, kid="a"),
            public_jwk(other, kid="b", use="enc"),  # for encryption, not signatures
            public_jwk(other, kid="c", alg="RS512"),
            {"kty": "oct", "kid": "d", "k": "c2VjcmV0", "alg": "HS256"},
            {**public_jwk(other), "kid": None},
            {"kty": "RSA", "kid": "e", "n": "not a modulus"},
            "not a key",
        ]
    }

    keys = auth.parse_jwks(document)

    assert list(keys) == ["a"]
    assert keys["a"].algorithm_name == "RS256"


@pytest.mark.parametrize("document", [{"keys": []}, {}, [], "keys", {"keys": {"kid": "a"}}])
def test_a_jwks_without_a_usable_key_is_an_error(document: Any) -> None:
    with pytest.raises(ValueError, match="no RS256 signing key"):
        auth.parse_jwks(document)


def test_keys_are_fetched_once_and_then_served_from_the_cache(jwks: JwksServer) -> None:
    keys = jwks.signing_keys()

    found = [keys.get(KID) for _ in range(5)]

    assert all(key is not None for key in found)
    assert jwks.fetches == 1


def test_fetched_keys_verify_tokens(configured: None, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(constants.AUDIT_COGNITO_JWKS_URL, jwks.url)

    assert auth.require_admin(f"Bearer {token()}").username == "audit-admin"  # the process's cache of that URL
    assert jwks.fetches == 1


def test_unknown_kids_make_at_most_one_fetch_per_interval(jwks: JwksServer) -> None:
    keys = jwks.signing_keys()
    keys.get(KID)
    fetched = time.monotonic()

    assert all(keys.get(f"forged-{n}") is None for n in range(100))
    assert jwks.fetches == 1  # none within the interval of the first fetch

    wait_until(fetched + INTERVAL)
    assert all(keys.get(f"forged-{n}") is None for n in range(100))
    assert jwks.fetches == 2  # one for the whole burst
    assert keys.get("forged-again") is None
    assert jwks.fetches == 2


def test_a_key_cognito_added_is_found_by_the_next_fetch(jwks: JwksServer) -> None:
    keys = jwks.signing_keys()
    keys.get(KID)
    fetched = time.monotonic()
    jwks.keys.append(public_jwk(new_key(), kid="rotated-in"))

    wait_until(fetched + INTERVAL)
    assert keys.get("rotated-in") is not None
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


@pytest.mark.parametrize("failure", ["503", "not json", "no keys", "not an object"])
def test_without_keys_the_answer_is_unavailable_and_failed_fetches_are_rate_limited_too(
    jwks: JwksServer, failure: str
) -> None:
    if failure == "503":
        jwks.failing = True
    else:
        jwks.body = {"not json": b"<html>", "no keys": b'{"keys": []}', "not an object": b"[]"}[failure]
    keys = jwks.signing_keys()

    for _ in range(10):
        with pytest.raises(auth.KeysUnavailable):
            keys.get(KID)
    failed = time.monotonic()  # the first failed fetch was before this
    assert jwks.fetches == 1

    jwks.failing, jwks.body = False, None
    wait_until(failed + INTERVAL)
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


def test_an_unreachable_jwks_url_is_unavailable() -> None:
    server = JwksServer()
    url = server.url
    server.close()  # nothing listens there any more

    with pytest.raises(auth.KeysUnavailable):
        auth.FetchedKeys(url).get(KID)


def test_a_failed_refetch_keeps_the_keys_held(jwks: JwksServer) -> None:
    keys = jwks.signing_keys()
    keys.get(KID)
    fetched = time.monotonic()
    jwks.failing = True

    wait_until(fetched + INTERVAL)
    assert keys.get("unknown") is None
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


def test_a_fetched_key_that_does_not_sign_rs256_is_no_key(jwks: JwksServer) -> None:
    jwks.keys += [public_jwk(new_key(), kid="enc", use="enc"), {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]
    keys = jwks.signing_keys()

    assert (keys.get("enc"), keys.get("hmac")) == (None, None)
    assert keys.get(KID) is not None


def test_one_key_cache_per_jwks_url_per_process() -> None:
    auth.reset()
    url = "https://cognito-idp.eu-west-2.amazonaws.com/pool/.well-known/jwks.json"

    assert auth.fetched_keys(url) is auth.fetched_keys(url)
    assert auth.fetched_keys(url) is not auth.fetched_keys(url + "?other")
    auth.reset()


# --- keys given at deploy (AUDIT_COGNITO_JWKS) ---------------------------------------------------


def test_keys_given_at_deploy_verify_tokens_and_are_never_fetched(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreachable JWKS URL: a fetch would fail, so a success proves none happened.
    monkeypatch.setenv(constants.AUDIT_COGNITO_JWKS_URL, "https://127.0.0.1:9/none")
    monkeypatch.setenv(constants.AUDIT_COGNITO_JWKS, json.dumps({"keys": [public_jwk(KEY)]}))

    assert auth.require_admin(f"Bearer {token()}").username == "audit-admin"

    other = new_key()  # a key the document does not hold: refused
    with pytest.raises(auth.Unauthorized):
        auth.require_admin(f"Bearer {token(key=other, kid='other')}")


@pytest.mark.parametrize(
    "document",
    ["not json", "{}", '{"keys": []}', json.dumps({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]})],
)
def test_a_malformed_jwks_given_at_deploy_is_a_configuration_error(
    configured: None, monkeypatch: pytest.MonkeyPatch, document: str
) -> None:
    monkeypatch.setenv(constants.AUDIT_COGNITO_JWKS, document)

    with pytest.raises(settings.AuditConfigError) as error:
        auth.require_admin(f"Bearer {token()}")
    assert error.value.problems == [
        f"{constants.AUDIT_COGNITO_JWKS} must be the user pool's JWKS document (JSON with RS256 keys)"
    ]
