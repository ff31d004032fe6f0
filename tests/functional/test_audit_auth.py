"""Who may call GET /audit, against moto's Cognito as a real server on a free loopback port.

The user pool is the local stack's (local/cognito.py); its tokens come from
signing in, as an admin's browser would get them, and the forged ones are made
here. moto signs every pool's tokens with one RSA key that ships inside moto;
the tests that need a token our JWKS vouches for but with a claim changed sign
with that key, and first show that such a token, unchanged, is accepted.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib import constants
from chalicelib.audit import auth, settings
from local import cognito
from local.hosp_standin.store import DEMO_ACCOUNTS
from local.processes import ROOT, closed_port
from tests.support import local_aws

CLI_TIMEOUT = 60  # a bound for a loaded machine; the command takes a second or two


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_aws(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def pool(aws: str) -> cognito.LocalCognito:
    return cognito.create(aws)


@pytest.fixture
def configured(pool: cognito.LocalCognito, monkeypatch: pytest.MonkeyPatch) -> Iterator[cognito.LocalCognito]:
    """The app's environment as the local stack sets it, and no keys cached yet."""
    for name in constants.AUDIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in pool.environment().items():
        monkeypatch.setenv(name, value)
    auth.reset()
    yield pool
    auth.reset()


@pytest.fixture(scope="module")
def admin_token(pool: cognito.LocalCognito) -> str:
    return cognito.sign_in(pool, "audit-admin").access


@pytest.fixture(scope="module")
def pool_public_key(pool: cognito.LocalCognito) -> jwt.PyJWK:
    (key,) = requests.get(pool.jwks_url, timeout=10).json()["keys"]
    return jwt.PyJWK(key)


def refused(header: str | None) -> auth.AuthError:
    with pytest.raises(auth.AuthError) as refusal:
        auth.require_admin(header)
    token = (header or "").partition(" ")[2]
    if token:
        assert token not in f"{refusal.value.reason} {refusal.value.www_authenticate}"
    return refusal.value


# --- tokens of the local user pool ------------------------------------------------------------------


def test_an_admins_access_token_is_accepted(configured: cognito.LocalCognito, admin_token: str) -> None:
    principal = auth.require_admin(f"Bearer {admin_token}")

    assert principal.username == "audit-admin"
    assert constants.ADMIN_GROUP in principal.groups
    assert principal.sub


def test_the_local_tokens_carry_the_issuer_and_client_the_app_is_given(
    configured: cognito.LocalCognito, admin_token: str
) -> None:
    claims = jwt.decode(admin_token, options={"verify_signature": False})
    app_settings = settings.cognito(configured.environment())

    assert claims["iss"] == app_settings.issuer == configured.issuer
    assert claims["client_id"] == app_settings.client_id
    assert app_settings.jwks_url == f"{configured.aws_url}/{configured.pool_id}/.well-known/jwks.json"
    assert app_settings.admin_group == constants.ADMIN_GROUP


def test_a_viewers_access_token_is_forbidden(configured: cognito.LocalCognito) -> None:
    viewer = cognito.sign_in(configured, "audit-viewer").access

    refusal = refused(f"Bearer {viewer}")

    assert isinstance(refusal, auth.Forbidden)
    assert refusal.status == 403
    assert 'error="insufficient_scope"' in refusal.www_authenticate


def test_an_id_token_is_refused_with_a_pointer_to_the_access_token(configured: cognito.LocalCognito) -> None:
    id_token = cognito.sign_in(configured, "audit-admin").id

    refusal = refused(f"Bearer {id_token}")

    assert isinstance(refusal, auth.Unauthorized)
    assert refusal.status == 401
    assert "send the access token" in refusal.reason
    assert 'error="invalid_token"' in refusal.www_authenticate


@pytest.mark.parametrize("header", [None, "", DEMO_ACCOUNTS[0].authorization])
def test_a_request_without_a_bearer_token_is_unauthorized(configured: cognito.LocalCognito, header: str | None) -> None:
    refusal = refused(header)

    assert isinstance(refusal, auth.Unauthorized)
    assert refusal.www_authenticate == f'Bearer realm="{auth.REALM}"'


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "..", "eyJhbGciOiJSUzI1NiJ9", "x" * 10_000])
def test_a_bearer_token_that_is_not_a_jwt_is_unauthorized(configured: cognito.LocalCognito, garbage: str) -> None:
    refusal = refused(f"Bearer {garbage}")

    assert isinstance(refusal, auth.Unauthorized)
    assert refusal.error == "invalid_token"


def test_a_token_with_one_signature_byte_flipped_is_unauthorized(
    configured: cognito.LocalCognito, admin_token: str
) -> None:
    signing_input, _, signature = admin_token.rpartition(".")
    flipped = bytearray(unb64(signature))
    flipped[len(flipped) // 2] ^= 0x01

    refusal = refused(f"Bearer {signing_input}.{b64(bytes(flipped))}")

    assert refusal.reason == "the token's signature does not verify"


def test_an_expired_token_is_unauthorized(configured: cognito.LocalCognito, admin_token: str) -> None:
    def expiring(exp: float) -> str:
        return f"Bearer {sign({**claims_of(admin_token), 'exp': exp}, motos_private_key(), kid=kid_of(admin_token))}"

    now = time.time()
    assert auth.require_admin(expiring(now - auth.LEEWAY_SECONDS + 10)).username == "audit-admin"
    assert refused(expiring(now - auth.LEEWAY_SECONDS - 10)).reason == "the token has expired"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1800000000", True])
def test_a_token_whose_times_are_not_finite_numbers_is_unauthorized(
    configured: cognito.LocalCognito, admin_token: str, claim: str, value: Any
) -> None:
    forged = sign({**claims_of(admin_token), claim: value}, motos_private_key(), kid=kid_of(admin_token))

    assert refused(f"Bearer {forged}").reason == "the token's times are not numbers"


def test_a_token_of_another_user_pool_is_unauthorized(
    configured: cognito.LocalCognito, pool_public_key: jwt.PyJWK
) -> None:
    idp = cognito.client(configured.aws_url)
    other_pool = idp.create_user_pool(PoolName="another-pool")["UserPool"]["Id"]
    other_client = idp.create_user_pool_client(
        UserPoolId=other_pool, ClientName="another", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    admin = cognito.demo_user("audit-admin")
    idp.admin_create_user(UserPoolId=other_pool, Username=admin.username, MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=other_pool, Username=admin.username, Password=admin.password, Permanent=True)
    other = cognito.LocalCognito(configured.aws_url, other_pool, other_client, issuer="", jwks_url="")
    token = cognito.sign_in(other, admin.username).access

    assert verifies(token, pool_public_key)  # moto signs it with the key our JWKS holds
    assert refused(f"Bearer {token}").reason == "the token was issued by another user pool"


def test_a_token_for_another_app_client_is_unauthorized(
    configured: cognito.LocalCognito, pool_public_key: jwt.PyJWK
) -> None:
    other_client = cognito.client(configured.aws_url).create_user_pool_client(
        UserPoolId=configured.pool_id, ClientName="another-app", ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    other = cognito.LocalCognito(configured.aws_url, configured.pool_id, other_client, configured.issuer, "")
    token = cognito.sign_in(other, "audit-admin").access

    assert verifies(token, pool_public_key)
    assert claims_of(token)["iss"] == configured.issuer
    assert refused(f"Bearer {token}").reason == "the token was issued to another app client"


# --- tokens forged here ---------------------------------------------------------------------------------


def test_tokens_resigned_with_motos_key_are_accepted_unchanged(
    configured: cognito.LocalCognito, admin_token: str
) -> None:
    """The control of the next tests: our re-signing makes tokens the pool's JWKS vouches for."""
    resigned = sign(claims_of(admin_token), motos_private_key(), kid=kid_of(admin_token))

    assert auth.require_admin(f"Bearer {resigned}").username == "audit-admin"


def test_a_token_without_token_use_is_unauthorized(configured: cognito.LocalCognito, admin_token: str) -> None:
    claims = claims_of(admin_token)
    del claims["token_use"]

    forged = sign(claims, motos_private_key(), kid=kid_of(admin_token))

    assert refused(f"Bearer {forged}").reason == "the token has no token_use claim"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_token_is_unauthorized(configured: cognito.LocalCognito, admin_token: str, alg: str) -> None:
    forged = unsigned({"alg": alg, "typ": "JWT", "kid": kid_of(admin_token)}, claims_of(admin_token)) + "."

    assert refused(f"Bearer {forged}").reason == "the token is not signed with RS256"


def test_a_token_signed_by_another_rsa_key_under_the_pools_kid_is_unauthorized(
    configured: cognito.LocalCognito, admin_token: str
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    forged = sign(claims_of(admin_token), other_key, kid=kid_of(admin_token))

    assert refused(f"Bearer {forged}").reason == "the token's signature does not verify"


@pytest.mark.parametrize("secret_form", ["pem", "pkcs1-pem", "der", "jwk-json"])
def test_hs256_with_the_pools_public_key_as_the_secret_is_unauthorized(
    configured: cognito.LocalCognito, admin_token: str, pool_public_key: jwt.PyJWK, secret_form: str
) -> None:
    """The classic confusion: a verifier that lets the header pick HMAC would take the public key as secret."""
    public_key = pool_public_key.key
    secret = {
        "pem": lambda: public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pkcs1-pem": lambda: public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        "der": lambda: public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": lambda: requests.get(configured.jwks_url, timeout=10).content,
    }[secret_form]()
    signing_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": kid_of(admin_token)}, claims_of(admin_token))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

    refusal = refused(f"Bearer {signing_input}.{b64(signature)}")

    assert isinstance(refusal, auth.Unauthorized)
    assert refusal.reason == "the token is not signed with RS256"


def test_a_token_under_an_unknown_kid_is_unauthorized(configured: cognito.LocalCognito, admin_token: str) -> None:
    forged = sign(claims_of(admin_token), motos_private_key(), kid="not-a-key-of-the-pool")

    assert refused(f"Bearer {forged}").reason == "the token is not signed with a key of the user pool"


def test_a_burst_of_unknown_kids_refetches_the_jwks_at_most_once_an_interval(
    configured: cognito.LocalCognito, admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 1.0  # REFETCH_INTERVAL, a minute, in the route
    fetches: list[str] = []
    fetch = jwt.PyJWKClient.fetch_data

    def counting_fetch(client: jwt.PyJWKClient) -> Any:
        fetches.append(client.uri)
        return fetch(client)  # the real request to moto

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", counting_fetch)
    keys = auth.FetchedKeys(configured.jwks_url, refetch_interval=interval)
    forged = [sign(claims_of(admin_token), motos_private_key(), kid=f"forged-{n}") for n in range(50)]

    def burst() -> None:
        for token in forged:
            with pytest.raises(auth.Unauthorized, match="not signed with a key of the user pool"):
                auth.require_admin(f"Bearer {token}", keys=keys)

    assert auth.require_admin(f"Bearer {admin_token}", keys=keys).username == "audit-admin"
    fetched = time.monotonic()
    assert len(fetches) == 1

    burst()
    assert len(fetches) == 1  # within the interval of the last fetch: none

    time.sleep(max(0.0, fetched + interval - time.monotonic()))
    burst()
    assert len(fetches) == 2  # an interval later: one for the whole burst

    assert auth.require_admin(f"Bearer {admin_token}", keys=keys).username == "audit-admin"
    assert fetches == [configured.jwks_url] * 2


# --- the command line ---------------------------------------------------------------------------------


def test_the_command_line_prints_an_access_token_of_the_pool(configured: cognito.LocalCognito) -> None:
    argv = [sys.executable, "-m", "local.cognito", "token", "--user", "audit-admin", "--aws-url", configured.aws_url]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)

    assert done.returncode == 0, done.stderr
    assert auth.require_admin(f"Bearer {done.stdout.strip()}").username == "audit-admin"


def test_the_command_line_says_when_there_is_no_local_aws() -> None:
    nowhere = f"http://127.0.0.1:{closed_port()}"
    argv = [sys.executable, "-m", "local.cognito", "token", "--user", "audit-admin", "--aws-url", nowhere]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("local.cognito: ")
    assert "Traceback" not in done.stderr


# --- helpers ---------------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A JWT's signing input: its header and claims, encoded."""
    return ".".join(b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims))


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, kid: str) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def verifies(token: str, key: jwt.PyJWK) -> bool:
    try:
        jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False})
    except jwt.InvalidSignatureError:
        return False
    return True


def motos_private_key() -> rsa.RSAPrivateKey:
    """The key moto signs every pool's tokens with, from the JWK file moto ships."""
    packed = resources.files("moto") / "cognitoidp" / "resources" / "jwks-private.json.gz"
    key = jwt.PyJWK(json.loads(gzip.decompress(packed.read_bytes()))).key
    assert isinstance(key, rsa.RSAPrivateKey)
    return key
