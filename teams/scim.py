"""django-scim2 adapters: groups (teams), the ServiceProviderConfig, SCIM token auth.

`from_dict()` and `patch()` only stage a `ScimGroupData`; `save()` and `delete()` apply it
through teams.scim_services, as the SCIM token's principal.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django_scim.adapters import SCIMGroup
from django_scim.middleware import SCIMAuthCheckMiddleware
from django_scim.middleware import logger as scim_logger
from django_scim.models import SCIMServiceProviderConfig
from django_scim.settings import scim_settings

from accounts.policy import Permission, Principal, decide
from accounts.scim import request_principal
from teams.models import Team
from teams.scim_protocol import (
    GROUP_RESOURCE,
    GROUP_URN,
    MAX_RESULTS,
    PATCH_URN,
    SPC_URN,
    ScimError,
    apply_patch,
    bad_request,
    base_location,
    decode_id,
    encode_id,
    etag_of,
    iso,
    parse_resource,
    scim_root,
)
from teams.scim_services import (
    ScimGroupData,
    scim_group_create,
    scim_group_delete,
    scim_group_replace,
    scim_principal_for,
    scim_token_authenticate,
)


class ScimGroupAdapter(SCIMGroup):
    """A SCIM-provisioned team as a SCIM Group; members are users (no nested groups)."""

    url_name = "scim:groups"
    resource_type = "Group"
    resource = GROUP_RESOURCE

    def __init__(self, obj: Team, request: HttpRequest | None = None) -> None:
        super().__init__(obj, request=request)
        self.obj: Team = obj
        self.staged: ScimGroupData | None = None

    @property
    def id(self) -> str:
        return encode_id("Group", self.obj.pk)

    @property
    def location(self) -> str:
        return base_location(self._request) + reverse(self.url_name, kwargs={"uuid": self.id})

    @property
    def display_name(self) -> str:
        link = getattr(self.obj, "scim_link", None)
        return link.display_name if link is not None else self.obj.name

    def _member_ids(self) -> list[int]:
        rows = getattr(self.obj, "scim_members", None)
        if rows is None:
            return list(
                self.obj.memberships.filter(role="member")
                .order_by("user_id")
                .values_list("user_id", flat=True)
            )
        return [row.user_id for row in rows]

    def to_dict(self) -> dict[str, Any]:
        """The full representation; empty attributes are left out (RFC 7643 §2.5)."""
        team = self.obj
        link = team.scim_link
        root = scim_root(self._request)
        doc: dict[str, Any] = {"schemas": [GROUP_URN], "id": self.id}
        if team.external_id:
            doc["externalId"] = team.external_id
        doc["displayName"] = link.display_name
        members = []
        for user_id in self._member_ids():
            member_id = encode_id("User", user_id)
            members.append(
                {"value": member_id, "$ref": f"{root}/Users/{member_id}", "type": "User"}
            )
        if members:
            doc["members"] = members
        doc["meta"] = {
            "resourceType": "Group",
            "created": iso(link.created_at),
            "lastModified": iso(link.updated_at),
            "location": self.location,
        }
        doc["meta"]["version"] = etag_of(doc)
        return doc

    def state(self) -> dict[str, Any]:
        """The writable attributes as they are now: what a PATCH starts from."""
        doc = self.to_dict()
        for key in ("schemas", "id", "meta"):
            doc.pop(key, None)
        return doc

    def from_dict(self, d: Any) -> None:
        """Stage a POST or PUT body."""
        self.staged = self._data(parse_resource(GROUP_RESOURCE, d, check_schemas=True))

    def patch(self, body: Any) -> None:
        """Stage the result of a PatchOp request (RFC 7644 §3.5.2)."""
        patched = apply_patch(GROUP_RESOURCE, self.state(), body)
        self.staged = self._data(parse_resource(GROUP_RESOURCE, patched, check_schemas=False))

    def handle_operations(self, operations: Any) -> None:
        """django-scim2's PATCH entry point."""
        self.patch({"schemas": [PATCH_URN], "Operations": operations})

    @staticmethod
    def _data(parsed: dict[str, Any]) -> ScimGroupData:
        member_ids = []
        for index, member in enumerate(parsed.get("members", [])):
            kind = str(member.get("type", "User"))
            if kind.lower() == "group":
                raise bad_request(f"members[{index}]: groups cannot be nested")
            pk = decode_id("User", member.get("value"))
            if pk is None:
                raise bad_request(f"members[{index}].value is not the id of a User")
            member_ids.append(pk)
        return ScimGroupData(
            display_name=parsed["displayName"],
            external_id=parsed.get("externalId", ""),
            member_ids=member_ids,
        )

    def save(self) -> None:
        """Create or replace the team through the SCIM services."""
        if self.staged is None:
            raise bad_request("nothing to save", "invalidSyntax")
        actor = request_principal(self._request)
        if not self.obj.pk:
            self.obj = scim_group_create(actor=actor, data=self.staged)
        else:
            self.obj = scim_group_replace(actor=actor, team=self.obj, data=self.staged)
        self.staged = None

    def delete(self) -> None:
        """SCIM DELETE (see scim_group_delete)."""
        scim_group_delete(actor=request_principal(self._request), team=self.obj)

    @classmethod
    def resource_type_dict(cls, request: HttpRequest | None = None) -> dict[str, Any]:
        return GROUP_RESOURCE.to_dict(scim_root(request))


class ServiceProviderConfig(SCIMServiceProviderConfig):
    """What the endpoint supports (RFC 7643 §5), stated as it is: filters and ETags work."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schemas": [SPC_URN],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": True},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "OAuth Bearer Token",
                    "description": "The SCIM token shown when SCIM is turned on for an SSO "
                    "configuration, sent as 'Authorization: Bearer <token>'",
                    "primary": True,
                }
            ],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": f"{scim_root(self.request)}/ServiceProviderConfig",
            },
        }


def holds_scim_provision(principal: object) -> bool:
    """django-scim2's GET_IS_AUTHENTICATED_PREDICATE: the caller may provision over SCIM."""
    return isinstance(principal, Principal) and decide(principal, Permission.SCIM_PROVISION).allowed


def authenticate_scim(request: HttpRequest) -> Principal | None:
    """The principal of the request's `Authorization: Bearer` SCIM token, or None.

    Only SCIM tokens are accepted here: PATs, virtual account tokens and console sessions
    are not, and a SCIM token is accepted nowhere else.
    """
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    token = scim_token_authenticate(raw.strip())
    return scim_principal_for(token) if token is not None else None


class ScimTokenAuthMiddleware(SCIMAuthCheckMiddleware):
    """django-scim2's AUTH_CHECK_MIDDLEWARE: a SCIM token, or a 401 in the SCIM error format."""

    def should_log_request(self, request: HttpRequest) -> bool:
        """Log bodies only when debugging: building the log line parses the body again."""
        return scim_logger.isEnabledFor(logging.DEBUG) and bool(super().should_log_request(request))

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        if self.should_log_request(request):
            self.log_request(request)
        principal = authenticate_scim(request)
        if principal is None or not holds_scim_provision(principal):
            return ScimError(
                401,
                "a valid SCIM bearer token is required",
                headers={"WWW-Authenticate": str(scim_settings.WWW_AUTHENTICATE_HEADER)},
            ).response()
        request.scim_principal = principal  # type: ignore[attr-defined]
        return None
