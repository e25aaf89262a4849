"""Authentication for the proxy paths: an in-process cache of token decisions.

A token's principal is loaded from the database once, then served from memory. Every process
polls `ConfigVersion` (moved by every audited change) every `GATEWAY_AUTH_POLL_SECONDS` and drops
its cache when it moves, so a revoked token, a deactivated user or a removed grant stops working
everywhere within poll interval + one query (stated bound: 2 seconds). Expiry is checked on each
use. When the database is unreachable, cached decisions keep serving; unknown tokens get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from accounts.models import ConfigVersion, PersonalAccessToken, TokenSecret, VirtualAccount
from accounts.policy import Principal
from accounts.selectors import principal_for_user
from accounts.sso import idp_jwt_authenticate, looks_like_jwt
from accounts.tokens import VA_PREFIX
from accounts.virtual_accounts import principal_for_virtual_account, va_for_token
from gateway_project.crypto import keyed_digest
from proxy import db

logger = logging.getLogger(__name__)


class AuthUnavailable(Exception):
    """The decision needs the database and the database is unreachable (HTTP 503, never 401)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A cached decision for one token digest."""

    principal: Principal
    expires_at: datetime | None
    token_kind: str  # "pat" | "vat"
    token_id: int  # PersonalAccessToken or TokenSecret id


def grant_for_token(raw: str) -> Grant | None:
    """The decision for a raw token, straight from the database (PAT or virtual account)."""
    if raw.startswith(VA_PREFIX):
        found = va_for_token(raw)
        if found is None:
            return None
        account, secret = found
        expiry = secret.expires_at
        return Grant(principal_for_virtual_account(account), expiry, "vat", secret.pk)
    if looks_like_jwt(raw):  # an IdP-issued JWT (`external-identity-provider`)
        jwt_grant = idp_jwt_authenticate(raw)
        if jwt_grant is None:
            return None
        return Grant(jwt_grant.principal, jwt_grant.expires_at, "jwt", 0)
    token = (
        PersonalAccessToken.objects.select_related("user", "user__tenant_role")
        .filter(digest=keyed_digest(raw), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    return Grant(principal_for_user(token.user), token.expires_at, "pat", token.pk)


def _load(raw: str) -> Grant | None:
    """grant_for_token on a proxy database thread; database errors mean 503, not 401."""
    try:
        return grant_for_token(raw)
    except DatabaseError as exc:
        raise AuthUnavailable from exc


def _read_version() -> int:
    try:
        return ConfigVersion.objects.filter(pk=1).values_list("version", flat=True).first() or 0
    except DatabaseError as exc:
        raise AuthUnavailable from exc


def _touch(used: list[tuple[str, int]]) -> None:
    now = timezone.now()
    pats = [i for kind, i in used if kind == "pat"]
    secrets = [i for kind, i in used if kind == "vat"]
    with contextlib.suppress(DatabaseError):
        PersonalAccessToken.objects.filter(pk__in=pats).update(last_used_at=now)
        TokenSecret.objects.filter(pk__in=secrets).update(last_used_at=now)
        VirtualAccount.objects.filter(tokens__secrets__pk__in=secrets).update(last_used_at=now)


class AuthCache:
    """Token digest -> Grant, plus a bounded negative cache, both dropped on version moves."""

    def __init__(self, *, max_unknown: int = 10_000) -> None:
        self._grants: dict[str, Grant] = {}
        self._unknown: OrderedDict[str, None] = OrderedDict()
        self._max_unknown = max_unknown
        self._locks: dict[str, asyncio.Lock] = {}
        self._used: set[tuple[str, int]] = set()
        self.version: int | None = None
        self.checked_at = 0.0

    def clear(self) -> None:
        self._grants.clear()
        self._unknown.clear()

    async def refresh(self) -> None:
        """Poll the config version once; drop the cache when it moved."""
        version = await db.run(_read_version)
        if version != self.version:
            self.clear()
            self.version = version
        self.checked_at = time.monotonic()

    async def authenticate(self, raw: str) -> Grant | None:
        """The grant for a raw token, or None (unknown, revoked, expired)."""
        digest = keyed_digest(raw)
        grant = self._grants.get(digest)
        if grant is None:
            if digest in self._unknown:
                return None
            grant = await self._load_once(digest, raw)
            if grant is None:
                return None
        if grant.expires_at is not None and grant.expires_at <= timezone.now():
            return None
        self._used.add((grant.token_kind, grant.token_id))
        return grant

    async def _load_once(self, digest: str, raw: str) -> Grant | None:
        lock = self._locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if digest in self._grants:
                return self._grants[digest]
            version = self.version
            try:
                grant = await db.run(_load, raw)
            finally:
                self._locks.pop(digest, None)
            if self.version != version:  # the cache was dropped meanwhile: do not resurrect
                return grant
            if grant is None:
                self._unknown[digest] = None
                while len(self._unknown) > self._max_unknown:
                    self._unknown.popitem(last=False)
            else:
                self._grants[digest] = grant
            return grant

    async def flush_last_used(self) -> None:
        """Record last use of the tokens seen since the previous flush (coarse, off the path)."""
        if not self._used:
            return
        used, self._used = sorted(self._used), set()
        await db.run(_touch, used)


async def watch(cache: AuthCache, stop: asyncio.Event) -> None:
    """Poll the config version until `stop`; flush last-used times every minute."""
    interval = float(settings.GATEWAY_AUTH_POLL_SECONDS)
    last_flush = time.monotonic()
    while not stop.is_set():
        try:
            await cache.refresh()
        except AuthUnavailable:
            logger.warning("auth cache: database unreachable; serving cached decisions")
        if time.monotonic() - last_flush > 60:
            last_flush = time.monotonic()
            await cache.flush_last_used()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
