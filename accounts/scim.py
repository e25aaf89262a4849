"""django-scim2 adapter for users: the core User schema plus the enterprise extension.

`from_dict()` and `patch()` only stage a `ScimUserData`; `save()` and `delete()` apply it
through teams.scim_services, as the SCIM token's principal.
"""

from __future__ import annotations

import copy
from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django_scim.adapters import SCIMUser

from accounts.models import User
from accounts.policy import Principal
from teams.scim_protocol import (
    ENTERPRISE_URN,
    PATCH_URN,
    USER_RESOURCE,
    USER_URN,
    apply_patch,
    bad_request,
    base_location,
    encode_id,
    etag_of,
    iso,
    parse_resource,
    scim_root,
)
from teams.scim_services import (
    ENTERPRISE_FIELDS,
    ScimUserData,
    scim_link_of,
    scim_user_create,
    scim_user_delete,
    scim_user_replace,
)


def request_principal(request: HttpRequest | None) -> Principal:
    """The SCIM token's principal, set on the request by the SCIM views' authentication."""
    principal = getattr(request, "scim_principal", None)
    if not isinstance(principal, Principal):
        return Principal.anonymous()
    return principal


class ScimUserAdapter(SCIMUser):
    """A gateway user as a SCIM User (userName is the sign-in email, lower-cased)."""

    url_name = "scim:users"
    resource_type = "User"
    resource = USER_RESOURCE

    def __init__(self, obj: User, request: HttpRequest | None = None) -> None:
        super().__init__(obj, request=request)
        self.obj: User = obj
        self.staged: ScimUserData | None = None

    @property
    def id(self) -> str:
        return encode_id("User", self.obj.pk)

    @property
    def location(self) -> str:
        return base_location(self._request) + reverse(self.url_name, kwargs={"uuid": self.id})

    @property
    def display_name(self) -> str:
        link = scim_link_of(self.obj)
        return (link.display_name if link is not None else "") or self.obj.display_name

    def _groups(self) -> list[dict[str, Any]]:
        memberships = getattr(self.obj, "scim_memberships", None)
        if memberships is None:
            return []
        root = scim_root(self._request)
        groups = []
        for membership in memberships:
            group_id = encode_id("Group", membership.team_id)
            groups.append(
                {
                    "value": group_id,
                    "$ref": f"{root}/Groups/{group_id}",
                    "display": membership.team.scim_link.display_name,
                    "type": "direct",
                }
            )
        return groups

    def to_dict(self) -> dict[str, Any]:
        """The full representation; empty attributes are left out (RFC 7643 §2.5)."""
        user = self.obj
        link = scim_link_of(user)
        doc: dict[str, Any] = {"schemas": [USER_URN], "id": self.id}
        if link is not None and link.external_id:
            doc["externalId"] = link.external_id
        doc["userName"] = user.email
        if link is not None:
            name = {"givenName": link.given_name, "familyName": link.family_name}
            name = {k: v for k, v in name.items() if v}
            if name:
                doc["name"] = name
        display = link.display_name if link is not None else user.display_name
        if display:
            doc["displayName"] = display
        if link is not None and link.emails:
            doc["emails"] = copy.deepcopy(link.emails)
        if link is None or link.active_asserted:
            doc["active"] = user.is_active
        groups = self._groups()
        if groups:
            doc["groups"] = groups
        if link is not None:
            enterprise = {
                attr: getattr(link, name)
                for attr, name in ENTERPRISE_FIELDS.items()
                if getattr(link, name)
            }
            if enterprise:
                doc["schemas"].append(ENTERPRISE_URN)
                doc[ENTERPRISE_URN] = enterprise
        doc["meta"] = {
            "resourceType": "User",
            "created": iso(user.date_joined),
            "lastModified": iso(link.updated_at if link is not None else user.date_joined),
            "location": self.location,
        }
        doc["meta"]["version"] = etag_of(doc)
        return doc

    def state(self) -> dict[str, Any]:
        """The writable attributes as they are now: what a PATCH starts from."""
        doc = self.to_dict()
        for key in ("schemas", "id", "meta", "groups"):
            doc.pop(key, None)
        return doc

    def from_dict(self, d: Any) -> None:
        """Stage a POST or PUT body. An `active` left out keeps the current state."""
        parsed = parse_resource(USER_RESOURCE, d, check_schemas=True)
        self.staged = self._data(parsed, keep_active=True)

    def patch(self, body: Any) -> None:
        """Stage the result of a PatchOp request (RFC 7644 §3.5.2)."""
        patched = apply_patch(USER_RESOURCE, self.state(), body)
        parsed = parse_resource(USER_RESOURCE, patched, check_schemas=False)
        self.staged = self._data(parsed, keep_active=False)

    def handle_operations(self, operations: Any) -> None:
        """django-scim2's PATCH entry point."""
        self.patch({"schemas": [PATCH_URN], "Operations": operations})

    def _data(self, parsed: dict[str, Any], *, keep_active: bool) -> ScimUserData:
        active = parsed.get("active")
        if active is None and keep_active:
            link = scim_link_of(self.obj) if self.obj.pk else None
            if not self.obj.pk:
                active = True
            elif link is None or link.active_asserted:
                active = self.obj.is_active
        name = parsed.get("name") or {}
        enterprise = parsed.get(ENTERPRISE_URN) or {}
        return ScimUserData(
            user_name=parsed["userName"],
            external_id=parsed.get("externalId", ""),
            given_name=name.get("givenName", ""),
            family_name=name.get("familyName", ""),
            display_name=parsed.get("displayName", ""),
            emails=parsed.get("emails", []),
            active=active,
            enterprise={ENTERPRISE_FIELDS[k]: v for k, v in enterprise.items()},
        )

    def save(self) -> None:
        """Create or replace the user through the SCIM services."""
        if self.staged is None:
            raise bad_request("nothing to save", "invalidSyntax")
        actor = request_principal(self._request)
        if not self.obj.pk:
            self.obj = scim_user_create(actor=actor, data=self.staged)
        else:
            self.obj = scim_user_replace(actor=actor, user=self.obj, data=self.staged)
        self.staged = None

    def delete(self) -> None:
        """SCIM DELETE: deactivate and hide (see scim_user_delete)."""
        scim_user_delete(actor=request_principal(self._request), user=self.obj)

    @classmethod
    def resource_type_dict(cls, request: HttpRequest | None = None) -> dict[str, Any]:
        return USER_RESOURCE.to_dict(scim_root(request))
