"""AWS STS AssumeRole for `assumed-role-based` Bedrock accounts.

The gateway's own AWS identity (the standard AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
AWS_SESSION_TOKEN environment variables of the gateway processes) assumes the account's role;
the temporary credentials are cached per (role, external id) until five minutes before they
expire. STS Query API, SigV4-signed (service `sts`), written from AWS's API reference.
"""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
from django.conf import settings

from providers.aws_sigv4 import AwsCredentials, sign

NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"
REFRESH_MARGIN = timedelta(minutes=5)
SESSION_NAME = "gateway"


class StsError(Exception):
    """AssumeRole failed; the message names no credential."""


@dataclass(frozen=True)
class TemporaryCredentials:
    credentials: AwsCredentials
    expires_at: datetime


def gateway_identity() -> AwsCredentials:
    """The gateway's own AWS credentials, from the process environment."""
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not key_id or not secret:
        raise StsError(
            "assumed-role accounts need the gateway's own AWS credentials "
            "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        )
    return AwsCredentials(key_id, secret, os.environ.get("AWS_SESSION_TOKEN", ""))


def sts_endpoint(region: str) -> str:
    override: str = settings.GATEWAY_AWS_STS_ENDPOINT
    return override.rstrip("/") + "/" if override else f"https://sts.{region}.amazonaws.com/"


def assume_role_request(role_arn: str, external_id: str, region: str) -> httpx.Request:
    """The signed AssumeRole request."""
    params = {
        "Action": "AssumeRole",
        "Version": "2011-06-15",
        "RoleArn": role_arn,
        "RoleSessionName": SESSION_NAME,
        "DurationSeconds": "3600",
    }
    if external_id:
        params["ExternalId"] = external_id
    body = urlencode(params).encode()
    url = sts_endpoint(region)
    headers = sign(
        method="POST",
        url=url,
        body=body,
        region=region,
        service="sts",
        headers={"content-type": "application/x-www-form-urlencoded"},
        credentials=gateway_identity(),
    )
    return httpx.Request("POST", url, content=body, headers=headers)


def parse_assume_role(response: httpx.Response) -> TemporaryCredentials:
    if response.status_code != 200:
        raise StsError(f"STS AssumeRole answered HTTP {response.status_code}")
    try:
        root = ET.fromstring(response.content)  # noqa: S314 - our own signed call's answer
        creds = root.find(f"{NS}AssumeRoleResult/{NS}Credentials")
        if creds is None:
            raise StsError("STS answered without credentials")
        value = {child.tag.removeprefix(NS): child.text or "" for child in creds}
        expires = datetime.fromisoformat(value["Expiration"].replace("Z", "+00:00"))
        return TemporaryCredentials(
            AwsCredentials(value["AccessKeyId"], value["SecretAccessKey"], value["SessionToken"]),
            expires,
        )
    except (ET.ParseError, KeyError, ValueError) as exc:
        raise StsError("STS answered with something that is not AssumeRole credentials") from exc


def assume_role(role_arn: str, external_id: str, region: str) -> TemporaryCredentials:
    """Synchronous AssumeRole (test connection)."""
    try:
        with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as client:
            return parse_assume_role(
                client.send(assume_role_request(role_arn, external_id, region))
            )
    except httpx.HTTPError as exc:
        raise StsError("STS could not be reached") from exc


class StsCache:
    """Per-process cache of temporary credentials, refreshed before they expire."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], TemporaryCredentials] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def get(
        self, client: httpx.AsyncClient, role_arn: str, external_id: str, region: str
    ) -> AwsCredentials:
        key = (role_arn, external_id, region)
        entry = self._entries.get(key)
        if entry is not None and entry.expires_at - REFRESH_MARGIN > datetime.now(UTC):
            return entry.credentials
        async with self._locks.setdefault(key, asyncio.Lock()):
            entry = self._entries.get(key)
            if entry is None or entry.expires_at - REFRESH_MARGIN <= datetime.now(UTC):
                try:
                    response = await client.send(assume_role_request(role_arn, external_id, region))
                except httpx.HTTPError as exc:
                    raise StsError("STS could not be reached") from exc
                entry = parse_assume_role(response)
                self._entries[key] = entry
            return entry.credentials
