"""Cognito on the local AWS (moto): the user pool whose access tokens open GET /audit.

`create` makes a user pool, an app client without secret that signs in with
USER_PASSWORD_AUTH, the admin group, and two users: `audit-admin` in the group
and `audit-viewer` outside it. `find` looks the pool up again by name, so that
`python -m local.cognito token --user audit-admin` prints an access token of the
pool the local stack created:

    TOKEN=$(.venv/bin/python -m local.cognito token --user audit-admin)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/audit

What moto 5.2.5 does, and this module follows:
- its tokens' `iss` is the AWS address, https://cognito-idp.<region>.amazonaws.com/<pool id>,
  even in server mode; access tokens carry `client_id`, `username` and `cognito:groups`;
- it serves the JWKS at <moto server>/<pool id>/.well-known/jwks.json;
- it signs the tokens of every pool with one RSA key that ships inside moto
  (key id "dummy"), so anyone can forge a local token: trust it on loopback only.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import constants

REGION = "eu-west-2"  # the local stack's region
DEFAULT_AWS_URL = "http://127.0.0.1:5000"  # the local stack's moto server
POOL_NAME = f"{constants.prefix(constants.LOCAL_STAGE)}-audit"
CLIENT_NAME = f"{POOL_NAME}-cli"
ADMIN_GROUP = constants.ADMIN_GROUP
# A server that is not there is reported within seconds.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2})


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    admin: bool  # in ADMIN_GROUP


# The local pool's users. Their passwords are fixtures of a local moto server,
# not secrets: that pool never exists anywhere but on a developer's machine or in
# CI. They satisfy Cognito's default password policy.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("audit-admin", "Audit-admin-local-only-1", admin=True),
    DemoUser("audit-viewer", "Audit-viewer-local-only-1", admin=False),
)


@dataclass(frozen=True)
class LocalCognito:
    """The local user pool and app client, and where the Chalice app checks their tokens."""

    aws_url: str
    pool_id: str
    client_id: str
    issuer: str
    jwks_url: str

    def environment(self) -> dict[str, str]:
        """The variables the Chalice app reads (chalicelib/audit/settings.py) for this pool."""
        return {
            constants.AUDIT_COGNITO_ISSUER: self.issuer,
            constants.AUDIT_COGNITO_JWKS_URL: self.jwks_url,
            constants.AUDIT_COGNITO_CLIENT_ID: self.client_id,
            constants.AUDIT_ADMIN_GROUP: ADMIN_GROUP,
        }


@dataclass(frozen=True)
class Tokens:
    access: str
    id: str


class CognitoNotFound(LookupError):
    """No local user pool or app client of ours on that server."""


def create(aws_url: str) -> LocalCognito:
    """A new user pool with its app client, the admin group and the demo users."""
    idp = client(aws_url)
    pool_id = idp.create_user_pool(PoolName=POOL_NAME)["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=CLIENT_NAME,
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.create_group(UserPoolId=pool_id, GroupName=ADMIN_GROUP, Description="may read the audit trail")
    for user in DEMO_USERS:
        idp.admin_create_user(UserPoolId=pool_id, Username=user.username, MessageAction="SUPPRESS")
        # Permanent: no "change your password" challenge at the first sign-in.
        idp.admin_set_user_password(UserPoolId=pool_id, Username=user.username, Password=user.password, Permanent=True)
        if user.admin:
            idp.admin_add_user_to_group(UserPoolId=pool_id, Username=user.username, GroupName=ADMIN_GROUP)
    return _local_cognito(aws_url, pool_id, client_id)


def find(aws_url: str) -> LocalCognito:
    """The newest pool `create` made on the server at aws_url; raises CognitoNotFound."""
    idp = client(aws_url)
    pools = [pool for pool in _all_pools(idp) if pool["Name"] == POOL_NAME]
    if not pools:
        raise CognitoNotFound(f"no user pool named {POOL_NAME} at {aws_url}; is the local stack (make run) up?")
    pool_id = max(pools, key=lambda pool: pool["CreationDate"])["Id"]
    clients = idp.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client_ids = [c["ClientId"] for c in clients if c["ClientName"] == CLIENT_NAME]
    if not client_ids:
        raise CognitoNotFound(f"the user pool {pool_id} at {aws_url} has no app client named {CLIENT_NAME}")
    return _local_cognito(aws_url, pool_id, client_ids[0])


def sign_in(cognito: LocalCognito, username: str, password: str | None = None) -> Tokens:
    """The tokens of a demo user (its password by default), as an app signing in would get them."""
    if password is None:
        password = demo_user(username).password
    answer = client(cognito.aws_url).initiate_auth(
        ClientId=cognito.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password},
    )
    result = answer["AuthenticationResult"]
    return Tokens(access=result["AccessToken"], id=result["IdToken"])


def demo_user(username: str) -> DemoUser:
    for user in DEMO_USERS:
        if user.username == username:
            return user
    raise KeyError(f"no demo user {username}; there are {', '.join(u.username for u in DEMO_USERS)}")


def client(aws_url: str) -> Any:
    """A Cognito user pools client of the local AWS at aws_url."""
    return boto3.client(
        "cognito-idp", endpoint_url=aws_url, region_name=REGION,
        aws_access_key_id="local", aws_secret_access_key="local",  # moto accepts any key; never a real one here
        config=CLIENT_CONFIG,
    )  # fmt: skip


def _local_cognito(aws_url: str, pool_id: str, client_id: str) -> LocalCognito:
    aws_url = aws_url.rstrip("/")
    return LocalCognito(
        aws_url=aws_url,
        pool_id=pool_id,
        client_id=client_id,
        issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",  # what moto writes into `iss`
        jwks_url=f"{aws_url}/{pool_id}/.well-known/jwks.json",
    )


def _all_pools(idp: Any) -> list[dict[str, Any]]:
    pools: list[dict[str, Any]] = []
    request: dict[str, Any] = {"MaxResults": 60}
    while True:
        page = idp.list_user_pools(**request)
        pools += page["UserPools"]
        if not page.get("NextToken"):
            return pools
        request["NextToken"] = page["NextToken"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="The local stack's Cognito (moto): tokens for GET /audit.")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a demo user's access token")
    token.add_argument("--user", required=True, choices=[user.username for user in DEMO_USERS])
    token.add_argument("--aws-url", default=DEFAULT_AWS_URL, help=f"the moto server (default {DEFAULT_AWS_URL})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(sign_in(find(args.aws_url), args.user).access)
    except (CognitoNotFound, BotoCoreError, ClientError) as exc:
        print(f"local.cognito: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
