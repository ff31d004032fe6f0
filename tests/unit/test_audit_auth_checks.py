"""chalicelib/audit/auth.py without a network: the header, the claims, the key cache.

Tokens here are signed with an RSA key made by the test, and the key cache is
given the test's JWKS document and clock. tests/functional/test_audit_auth.py
checks the same code against tokens of moto's Cognito.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.audit import auth, settings

ISSUER = "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test"
CLIENT_ID = "test-client"
KID = "test-key"
NOW = 1_800_000_000.0
ENVIRONMENT = {
    settings.AUDIT_COGNITO_ISSUER: ISSUER,
    settings.AUDIT_COGNITO_JWKS_URL: f"{ISSUER}/.well-known/jwks.json",
    settings.AUDIT_COGNITO_CLIENT_ID: CLIENT_ID,
}


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY = new_key()


def public_jwk(key: rsa.RSAPrivateKey, kid: str = KID, **fields: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig", **fields}


def access_claims(**changes: Any) -> dict[str, Any]:
    """An access token's claims as Cognito writes them; a change of None removes the claim."""
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "0b5e6f2a-user",
        "client_id": CLIENT_ID,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": int(NOW),
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
        "jti": "a-token-id",
        "username": "audit-admin",
        "cognito:groups": ["audit-admins"],
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def token(claims: dict[str, Any] | None = None, key: rsa.RSAPrivateKey = KEY, kid: str = KID) -> str:
    return jwt.encode(access_claims() if claims is None else claims, key, algorithm="RS256", headers={"kid": kid})


class Jwks:
    """The JWKS document the key cache fetches, counting the fetches, and its clock."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.failing = False
        self.time = 0.0

    def fetch(self, url: str) -> Any:
        self.fetches += 1
        if self.failing:
            raise requests.ConnectionError("no route to Cognito")
        return {"keys": self.keys}

    def clock(self) -> float:
        return self.time

    def signing_keys(self) -> auth.SigningKeys:
        return auth.SigningKeys(ENVIRONMENT[settings.AUDIT_COGNITO_JWKS_URL], fetch=self.fetch, clock=self.clock)


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in settings.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    auth.reset()
    yield
    auth.reset()


def check(authorization: str | None, now: float = NOW) -> auth.Principal:
    return auth.require_admin(authorization, now=now, keys=Jwks(public_jwk(KEY)).signing_keys())


def refusal(authorization: str | None, now: float = NOW) -> auth.AuthError:
    with pytest.raises(auth.AuthError) as refused:
        check(authorization, now)
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
    assert refused.value.www_authenticate == 'Bearer realm="hosp-reliability"'  # no error code (RFC 6750, 3.1)
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
        'Bearer realm="hosp-reliability", error="invalid_token", error_description="the token has expired"'
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

    assert principal == auth.Principal(username="audit-admin", sub="0b5e6f2a-user", groups=("audit-admins",))


@pytest.mark.parametrize("groups", [["audit-viewers"], [], None])
def test_a_valid_token_of_someone_outside_the_admin_group_is_forbidden(configured: None, groups: Any) -> None:
    with pytest.raises(auth.Forbidden):
        check(f"Bearer {token(access_claims(**{'cognito:groups': groups}))}")


def test_the_admin_group_is_a_setting(configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.AUDIT_ADMIN_GROUP, "auditors")
    admin_token = token(access_claims(**{"cognito:groups": ["audit-admins"]}))
    auditor_token = token(access_claims(**{"cognito:groups": ["staff", "auditors"]}))

    with pytest.raises(auth.Forbidden):
        check(f"Bearer {admin_token}")
    assert check(f"Bearer {auditor_token}").groups == ("staff", "auditors")


def test_expiry_allows_the_leeway_and_no_more(configured: None) -> None:
    expires = access_claims()["exp"]
    bearer = f"Bearer {token()}"

    assert check(bearer, now=expires + auth.LEEWAY_SECONDS - 1).username == "audit-admin"
    assert refusal(bearer, now=expires + auth.LEEWAY_SECONDS + 1).reason == "the token has expired"


@pytest.mark.parametrize(("claim", "reason"), [("iat", "issued in the future"), ("nbf", "not valid yet")])
def test_a_token_from_the_future_is_refused_beyond_the_leeway(configured: None, claim: str, reason: str) -> None:
    early = f"Bearer {token(access_claims(**{claim: int(NOW) + auth.LEEWAY_SECONDS + 5}))}"
    slightly_early = f"Bearer {token(access_claims(**{claim: int(NOW) + auth.LEEWAY_SECONDS - 5}))}"

    assert reason in refusal(early).reason
    assert check(slightly_early).username == "audit-admin"


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
        ({"exp": str(int(NOW) + 3600)}, "the token's times are not numbers"),
        ({"exp": True}, "the token's times are not numbers"),
        ({"username": 7}, "the token's claims are malformed"),
        ({"cognito:groups": "audit-admins"}, "the token's claims are malformed"),
        ({"cognito:groups": [["audit-admins"]]}, "the token's claims are malformed"),
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
    for name in settings.VARIABLES:
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(settings.AuditConfigError) as missing:
        check(f"Bearer {token()}")
    assert settings.AUDIT_COGNITO_ISSUER in str(missing.value)


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
    monkeypatch.setenv(settings.AUDIT_COGNITO_JWKS_URL, url)

    if allowed:
        assert check(f"Bearer {token()}").username == "audit-admin"
    else:
        with pytest.raises(settings.AuditConfigError, match=settings.AUDIT_COGNITO_JWKS_URL):
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


def test_keys_are_fetched_once_and_then_served_from_the_cache() -> None:
    jwks = Jwks(public_jwk(KEY))
    keys = jwks.signing_keys()

    found = [keys.get(KID) for _ in range(5)]

    assert all(key is not None for key in found)
    assert jwks.fetches == 1


def test_unknown_kids_make_at_most_one_fetch_per_interval() -> None:
    jwks = Jwks(public_jwk(KEY))
    keys = jwks.signing_keys()
    keys.get(KID)

    jwks.time = auth.REFETCH_INTERVAL - 0.1
    assert all(keys.get(f"forged-{n}") is None for n in range(100))
    assert jwks.fetches == 1  # none within the interval of the first fetch

    jwks.time = auth.REFETCH_INTERVAL
    assert all(keys.get(f"forged-{n}") is None for n in range(100))
    assert jwks.fetches == 2  # one for the whole burst

    jwks.time = 2 * auth.REFETCH_INTERVAL - 0.1
    assert keys.get("forged-again") is None
    assert jwks.fetches == 2

    jwks.time = 2 * auth.REFETCH_INTERVAL
    assert keys.get("forged-again") is None
    assert jwks.fetches == 3


def test_a_key_cognito_added_is_found_by_the_next_fetch() -> None:
    jwks = Jwks(public_jwk(KEY))
    keys = jwks.signing_keys()
    keys.get(KID)
    jwks.keys.append(public_jwk(new_key(), kid="rotated-in"))

    jwks.time = auth.REFETCH_INTERVAL
    assert keys.get("rotated-in") is not None
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


def test_without_keys_the_answer_is_unavailable_and_failed_fetches_are_rate_limited_too() -> None:
    jwks = Jwks(public_jwk(KEY))
    jwks.failing = True
    keys = jwks.signing_keys()

    for _ in range(10):
        with pytest.raises(auth.KeysUnavailable):
            keys.get(KID)
    assert jwks.fetches == 1

    jwks.failing = False
    jwks.time = auth.REFETCH_INTERVAL
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


def test_a_failed_refetch_keeps_the_keys_held() -> None:
    jwks = Jwks(public_jwk(KEY))
    keys = jwks.signing_keys()
    keys.get(KID)
    jwks.failing = True

    jwks.time = auth.REFETCH_INTERVAL
    assert keys.get("unknown") is None
    assert keys.get(KID) is not None
    assert jwks.fetches == 2


def test_one_key_cache_per_jwks_url_per_process() -> None:
    auth.reset()
    url = "https://cognito-idp.eu-west-2.amazonaws.com/pool/.well-known/jwks.json"

    assert auth.signing_keys(url) is auth.signing_keys(url)
    assert auth.signing_keys(url) is not auth.signing_keys(url + "?other")
    auth.reset()


# --- keys given at deploy (AUDIT_COGNITO_JWKS) ---------------------------------------------------


def test_keys_given_at_deploy_verify_tokens_and_are_never_fetched(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unreachable JWKS URL: a fetch would fail, so a success proves none happened.
    monkeypatch.setenv(settings.AUDIT_COGNITO_JWKS_URL, "https://127.0.0.1:9/none")
    monkeypatch.setenv(settings.AUDIT_COGNITO_JWKS, json.dumps({"keys": [public_jwk(KEY)]}))

    assert auth.require_admin(f"Bearer {token()}", now=NOW).username == "audit-admin"

    other = new_key()  # a key the document does not hold: refused
    with pytest.raises(auth.Unauthorized):
        auth.require_admin(f"Bearer {token(key=other, kid='other')}", now=NOW)


@pytest.mark.parametrize(
    "document",
    ["not json", "{}", '{"keys": []}', json.dumps({"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]})],
)
def test_a_malformed_jwks_given_at_deploy_is_a_configuration_error(
    configured: None, monkeypatch: pytest.MonkeyPatch, document: str
) -> None:
    monkeypatch.setenv(settings.AUDIT_COGNITO_JWKS, document)

    with pytest.raises(settings.AuditConfigError) as error:
        auth.require_admin(f"Bearer {token()}", now=NOW)
    assert error.value.problems == [
        f"{settings.AUDIT_COGNITO_JWKS} must be the user pool's JWKS document (JSON with RS256 keys)"
    ]
