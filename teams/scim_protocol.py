"""SCIM 2.0 protocol pieces the gateway's endpoint is built from (RFC 7643, RFC 7644).

django-scim2 0.23 provides the views, adapters and settings the endpoint is built on. What it
leaves out or gets wrong is done here, without touching the package:

- the published schemas list only what the gateway stores (RFC 7643 §7);
- request bodies are validated against them, with the IdP quirks tolerated: string booleans
  (`"False"`), a single object where a list is due (OneLogin), attributes the RFC defines but
  the gateway does not store (Entra's default mappings) accepted and ignored;
- PATCH (RFC 7644 §3.5.2): add/remove/replace with value filters and sub-attributes, paths
  without a path, capitalised op names; every operation of a request is applied to a copy
  of the resource, which is then validated and saved as a whole (all or nothing);
- filters become Django `Q` objects through scim2-filter-parser's Q transpiler, so they run
  on SQLite and PostgreSQL alike; unknown attributes are refused instead of ignored;
- `attributes` / `excludedAttributes`, list responses with `totalResults`, and the SCIM
  error format with `scimType`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils.dateparse import parse_datetime
from django_scim.exceptions import SCIMException
from django_scim.filters import FilterQuery
from scim2_filter_parser import ast as scim_ast
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError
from scim2_filter_parser.transpilers.django_q_object import Transpiler

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SPC_URN = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_URN = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_URN = "urn:ietf:params:scim:schemas:core:2.0:Schema"
CONTENT_TYPE = "application/scim+json"
MAX_RESULTS = 200  # also the page size when a list request gives no `count`


# --- errors --------------------------------------------------------------------------------


class ScimError(SCIMException):
    """An error answered in the SCIM format (RFC 7644 §3.12)."""

    def __init__(
        self,
        status: int,
        detail: str,
        scim_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail, status=status, scim_type=scim_type)
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The error body; `status` is a string, as RFC 7644 §3.12 shows it."""
        body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body

    def response(self) -> HttpResponse:
        """The HTTP response carrying this error."""
        response = HttpResponse(
            json.dumps(self.to_dict()), content_type=CONTENT_TYPE, status=self.status
        )
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_request(detail: str, scim_type: str = "invalidValue") -> ScimError:
    """400 with a `scimType` keyword (RFC 7644 §3.12, table 9)."""
    return ScimError(400, detail, scim_type)


# --- schemas -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    """One attribute definition (RFC 7643 §7) and how the gateway treats it."""

    name: str
    type: Literal["string", "boolean", "complex", "reference", "dateTime"] = "string"
    multi: bool = False
    required: bool = False
    mutability: Literal["readOnly", "readWrite", "immutable", "writeOnly"] = "readWrite"
    returned: Literal["always", "never", "default", "request"] = "default"
    case_exact: bool = False
    uniqueness: Literal["none", "server", "global"] = "none"
    description: str = ""
    sub: tuple[Attr, ...] = ()
    canonical: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    # Sub-attributes the RFC defines that are accepted and not stored (lower-case).
    ignored_sub: frozenset[str] = frozenset()

    @property
    def read_only(self) -> bool:
        return self.mutability == "readOnly"

    def sub_attr(self, name: str) -> Attr | None:
        """The sub-attribute called `name` (attribute names are case-insensitive, §2.1)."""
        lowered = name.lower()
        return next((s for s in self.sub if s.name.lower() == lowered), None)

    def to_dict(self) -> dict[str, Any]:
        """The RFC 7643 §7 representation published at /Schemas."""
        doc: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "mutability": self.mutability,
            "returned": self.returned,
        }
        if self.type in ("string", "reference"):
            doc["caseExact"] = self.case_exact
            doc["uniqueness"] = self.uniqueness
        if self.canonical:
            doc["canonicalValues"] = list(self.canonical)
        if self.reference_types:
            doc["referenceTypes"] = list(self.reference_types)
        if self.sub:
            doc["subAttributes"] = [s.to_dict() for s in self.sub]
        return doc


@dataclass(frozen=True)
class SchemaDef:
    """A published schema, plus the RFC attributes it accepts without storing them."""

    id: str
    name: str
    description: str
    attributes: tuple[Attr, ...]
    ignored: frozenset[str] = frozenset()  # lower-case attribute names

    def attr(self, name: str) -> Attr | None:
        lowered = name.lower()
        return next((a for a in self.attributes if a.name.lower() == lowered), None)

    def to_dict(self, base: str) -> dict[str, Any]:
        return {
            "schemas": [SCHEMA_URN],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_dict() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{self.id}"},
        }


# Common attribute (RFC 7643 §3.1): not part of any schema's attribute list.
EXTERNAL_ID = Attr("externalId", case_exact=True)

USER_SCHEMA = SchemaDef(
    id=USER_URN,
    name="User",
    description="User Account",
    attributes=(
        Attr(
            "userName",
            required=True,
            uniqueness="server",
            description="The sign-in email address of the user; unique, case-insensitive.",
        ),
        Attr(
            "name",
            "complex",
            description="The components of the user's real name.",
            sub=(
                Attr("givenName", description="The given name of the user."),
                Attr("familyName", description="The family name of the user."),
            ),
            ignored_sub=frozenset(
                {"formatted", "middlename", "honorificprefix", "honorificsuffix"}
            ),
        ),
        Attr(
            "displayName",
            description="The name shown in the console; the given and family names when absent.",
        ),
        Attr(
            "emails",
            "complex",
            multi=True,
            description="Email addresses of the user (userName stays the sign-in address).",
            sub=(
                Attr("value", description="An email address."),
                Attr("type", canonical=("work", "home", "other"), description="Its kind."),
                Attr("primary", "boolean", description="Whether it is the preferred one."),
            ),
            ignored_sub=frozenset({"display"}),
        ),
        Attr(
            "active",
            "boolean",
            description="False deactivates the user: no sign-in, sessions and tokens stop.",
        ),
        Attr(
            "groups",
            "complex",
            multi=True,
            mutability="readOnly",
            description="The SCIM groups (teams) the user is a member of.",
            sub=(
                Attr("value", mutability="readOnly", case_exact=True, description="Group id."),
                Attr(
                    "$ref",
                    "reference",
                    mutability="readOnly",
                    reference_types=("Group",),
                    description="The group's URI.",
                ),
                Attr("display", mutability="readOnly", description="The group's displayName."),
                Attr(
                    "type",
                    mutability="readOnly",
                    canonical=("direct",),
                    description="Membership kind.",
                ),
            ),
        ),
    ),
    ignored=frozenset(
        {
            "nickname",
            "profileurl",
            "title",
            "usertype",
            "preferredlanguage",
            "locale",
            "timezone",
            "password",
            "phonenumbers",
            "ims",
            "photos",
            "addresses",
            "entitlements",
            "roles",
            "x509certificates",
        }
    ),
)

ENTERPRISE_SCHEMA = SchemaDef(
    id=ENTERPRISE_URN,
    name="EnterpriseUser",
    description="Enterprise User",
    attributes=(
        Attr("employeeNumber", description="Identifier assigned by the organization."),
        Attr("costCenter", description="Name of a cost center."),
        Attr("organization", description="Name of an organization."),
        Attr("division", description="Name of a division."),
        Attr("department", description="Name of a department."),
    ),
    ignored=frozenset({"manager"}),
)

GROUP_SCHEMA = SchemaDef(
    id=GROUP_URN,
    name="Group",
    description="Group: a team of the gateway",
    attributes=(
        Attr(
            "displayName",
            required=True,
            description="The IdP's group name. The team is named after it, or after a valid "
            "name mapped from it when it does not fit the team name rule.",
        ),
        Attr(
            "members",
            "complex",
            multi=True,
            description="Users in the group (groups cannot be nested).",
            sub=(
                Attr(
                    "value",
                    mutability="immutable",
                    case_exact=True,
                    description="The id of a User.",
                ),
                Attr(
                    "$ref",
                    "reference",
                    mutability="immutable",
                    reference_types=("User",),
                    description="The URI of the User.",
                ),
                Attr(
                    "type",
                    mutability="immutable",
                    canonical=("User",),
                    description="Always 'User'.",
                ),
            ),
            ignored_sub=frozenset({"display"}),
        ),
    ),
)


@dataclass(frozen=True)
class ResourceDef:
    """A resource type (RFC 7643 §6): its endpoint, core schema and extensions."""

    name: str
    endpoint: str
    description: str
    core: SchemaDef
    extensions: tuple[SchemaDef, ...] = ()

    @property
    def schemas(self) -> tuple[SchemaDef, ...]:
        return (self.core, *self.extensions)

    def schema(self, urn: str) -> SchemaDef | None:
        lowered = urn.lower()
        return next((s for s in self.schemas if s.id.lower() == lowered), None)

    def find(self, schema: SchemaDef, name: str) -> Attr | None:
        """The attribute `name` of `schema`; `externalId` belongs to the core schema."""
        if schema is self.core and name.lower() == "externalid":
            return EXTERNAL_ID
        return schema.attr(name)

    def to_dict(self, base: str) -> dict[str, Any]:
        return {
            "schemas": [RESOURCE_TYPE_URN],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.core.id,
            "schemaExtensions": [{"schema": e.id, "required": False} for e in self.extensions],
            "meta": {
                "resourceType": "ResourceType",
                "location": f"{base}/ResourceTypes/{self.name}",
            },
        }


USER_RESOURCE = ResourceDef("User", "/Users", "User Account", USER_SCHEMA, (ENTERPRISE_SCHEMA,))
GROUP_RESOURCE = ResourceDef("Group", "/Groups", "Group (a team)", GROUP_SCHEMA)
RESOURCES = (USER_RESOURCE, GROUP_RESOURCE)
SCHEMAS = (USER_SCHEMA, ENTERPRISE_SCHEMA, GROUP_SCHEMA)


def published_schemas() -> list[dict[str, Any]]:
    """django-scim2's SCHEMAS_GETTER: the schemas as published, located under the public URL."""
    return [s.to_dict(scim_root()) for s in SCHEMAS]


def scim_root(request: HttpRequest | None = None) -> str:
    """The SCIM base URL without a trailing slash, e.g. `https://gw.example.com/scim/v2`."""
    return base_location(request) + "/scim/v2"


def base_location(request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> str:
    """django-scim2's BASE_LOCATION_GETTER: scheme and host of the request, else the public URL."""
    if request is not None:
        return f"{request.scheme}://{request.get_host()}"
    return str(settings.GATEWAY_PUBLIC_URL).rstrip("/")


# --- ids -----------------------------------------------------------------------------------

_ID_TAGS = {"User": 1, "Group": 2}


def encode_id(kind: Literal["User", "Group"], pk: int) -> str:
    """A resource id: a UUID that carries the kind and primary key.

    RFC 7643 §3.1 wants ids unique across all resources, so a user and a team with the same
    primary key must not share one; this needs no stored column.
    """
    return str(uuid.UUID(int=(_ID_TAGS[kind] << 64) | pk))


def decode_id(kind: Literal["User", "Group"], value: object) -> int | None:
    """The primary key inside an id of `kind`, or None when it is no such id."""
    try:
        number = uuid.UUID(str(value)).int
    except ValueError:
        return None
    if number >> 64 != _ID_TAGS[kind]:
        return None
    pk = number & ((1 << 64) - 1)
    return pk if pk > 0 else None


# --- request bodies ------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    """The JSON body, or 400 invalidSyntax."""
    try:
        return json.loads(body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", "invalidSyntax") from exc


def _lower_keys(value: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()}


def coerce(attr: Attr, value: Any, path: str) -> Any:
    """`value` checked against `attr`, in canonical form; None means unassigned."""
    if value is None:
        return None
    if attr.multi:
        if isinstance(value, dict):  # one value where a list is due (OneLogin)
            value = [value]
        if not isinstance(value, list):
            raise bad_request(f"'{path}' must be a list")
        items = [_coerce_single(attr, item, path) for item in value]
        return [item for item in items if item not in (None, {})]
    return _coerce_single(attr, value, path)


def _coerce_single(attr: Attr, value: Any, path: str) -> Any:
    if value is None:
        return None
    if attr.type == "complex":
        if not isinstance(value, dict):
            raise bad_request(f"'{path}' must be an object")
        out: dict[str, Any] = {}
        for key, sub_value in value.items():
            sub = attr.sub_attr(str(key))
            if sub is None:
                if str(key).lower() in attr.ignored_sub:
                    continue
                raise bad_request(f"unknown attribute '{path}.{key}'", "invalidSyntax")
            if sub.read_only:
                continue
            coerced = _coerce_single(sub, sub_value, f"{path}.{sub.name}")
            if coerced is not None:
                out[sub.name] = coerced
        return out
    if attr.type == "boolean":
        if isinstance(value, bool):
            return value
        # Entra ID sends "True"/"False" strings.
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise bad_request(f"'{path}' must be a boolean")
    if not isinstance(value, str):
        raise bad_request(f"'{path}' must be a string")
    return value


def parse_resource(rdef: ResourceDef, body: Any, *, check_schemas: bool) -> dict[str, Any]:
    """A POST/PUT body (or a patched resource) as canonical attributes; refuses what is wrong.

    ReadOnly attributes are ignored (RFC 7644 §3.3). Unknown attributes are refused; those the
    RFC defines but the gateway does not store are accepted and ignored.
    """
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalidSyntax")
    if check_schemas:
        _check_schemas(rdef, body)
    out: dict[str, Any] = {}
    for key, value in body.items():
        lowered = str(key).lower()
        if lowered in ("schemas", "id", "meta"):
            continue
        extension = rdef.schema(lowered)
        if extension is not None and extension is not rdef.core:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise bad_request(f"'{key}' must be an object", "invalidSyntax")
            attrs = _parse_attrs(rdef, extension, value, extension.id)
            if attrs:
                out[extension.id] = attrs
            continue
        if extension is rdef.core:  # attributes nested under the core URN
            if not isinstance(value, dict):
                raise bad_request(f"'{key}' must be an object", "invalidSyntax")
            out.update(_parse_attrs(rdef, rdef.core, value, ""))
            continue
        out.update(_parse_attrs(rdef, rdef.core, {key: value}, ""))
    if check_schemas or "schemas" not in body:
        _check_required(rdef, out)
    return out


def _check_schemas(rdef: ResourceDef, body: Mapping[str, Any]) -> None:
    schemas = _lower_keys(body).get("schemas")
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise bad_request("'schemas' must list the resource's schema URIs", "invalidSyntax")
    known = {s.id.lower() for s in rdef.schemas}
    lowered = {s.lower() for s in schemas}
    if rdef.core.id.lower() not in lowered:
        raise bad_request(f"'schemas' must include {rdef.core.id}", "invalidSyntax")
    # Another resource's schema is an error. A URI the gateway has never heard of is
    # tolerated while no attribute uses it: Entra ID lists its own ADSCIM marker schema.
    foreign = sorted(lowered & {s.id.lower() for s in SCHEMAS} - known)
    if foreign:
        raise bad_request(f"schema(s) of another resource: {', '.join(foreign)}", "invalidSyntax")


def _parse_attrs(
    rdef: ResourceDef, schema: SchemaDef, values: Mapping[str, Any], prefix: str
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if prefix and str(key).lower() == "schemas":
            continue
        attr = rdef.find(schema, str(key))
        label = f"{prefix}:{key}" if prefix else str(key)
        if attr is None:
            if str(key).lower() in schema.ignored:
                continue
            raise bad_request(f"unknown attribute '{label}'", "invalidSyntax")
        if attr.read_only:
            continue
        coerced = coerce(attr, value, label)
        if coerced not in (None, [], {}):
            out[attr.name] = coerced
    return out


def _check_required(rdef: ResourceDef, doc: Mapping[str, Any]) -> None:
    for attr in rdef.core.attributes:
        if attr.required and doc.get(attr.name) in (None, ""):
            raise bad_request(f"'{attr.name}' is required")


# --- paths and value filters ---------------------------------------------------------------


@dataclass(frozen=True)
class Path:
    """A parsed PATCH path (RFC 7644 §3.5.2, figure 7)."""

    schema: SchemaDef
    attr: Attr | None  # None: the path names a whole extension
    filter: Any = None  # scim2-filter-parser AST of the value filter
    sub: Attr | None = None
    ignored: bool = False  # an RFC attribute the gateway does not store
    text: str = ""


_NAME = re.compile(r"^\$?[A-Za-z][\w$-]*")
# IdPs send short filters (`userName eq "..."`); a bound keeps parsing and the error echo small.
MAX_FILTER_LENGTH = 4096


def parse_filter(text: str, scim_type: str = "invalidFilter") -> Any:
    """The AST of a SCIM filter, or 400 invalidFilter (also when too long or too deep)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise bad_request(f"the filter is longer than {MAX_FILTER_LENGTH} characters", scim_type)
    try:
        tree = SCIMParser().parse(SCIMLexer().tokenize(text))
    except (
        SCIMParserError,
        ValueError,
        TypeError,
        IndexError,
        AttributeError,
        RecursionError,
    ) as exc:
        raise bad_request(f"invalid filter: {text!r}", scim_type) from exc
    if tree is None:
        raise bad_request(f"invalid filter: {text!r}", scim_type)
    return tree


def _closing_bracket(text: str) -> int:
    quoted = False
    for index, char in enumerate(text):
        if char == '"' and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif char == "]" and not quoted:
            return index
    raise bad_request(f"unbalanced '[' in path {text!r}", "invalidPath")


def parse_path(rdef: ResourceDef, raw: str) -> Path:
    """Resolve a path against the resource's schemas; 400 invalidPath when it names nothing."""
    if not isinstance(raw, str) or not raw.strip():
        raise bad_request("'path' must be a non-empty string", "invalidPath")
    text = raw.strip()
    lowered = text.lower()
    schema = rdef.core
    for candidate in sorted(rdef.schemas, key=lambda s: -len(s.id)):
        urn = candidate.id.lower()
        if lowered == urn:
            if candidate is rdef.core:
                raise bad_request(f"path {raw!r} names no attribute", "invalidPath")
            return Path(candidate, None, text=raw)
        if lowered.startswith(urn + ":"):
            schema = candidate
            text = text[len(urn) + 1 :]
            break
    else:
        if lowered.startswith("urn:"):
            raise bad_request(f"unknown schema in path {raw!r}", "invalidPath")
    match = _NAME.match(text)
    if match is None:
        raise bad_request(f"invalid path {raw!r}", "invalidPath")
    name, rest = match.group(0), text[match.end() :]
    value_filter = None
    if rest.startswith("["):
        close = _closing_bracket(rest)
        value_filter = parse_filter(rest[1:close])
        rest = rest[close + 1 :]
    sub_name = None
    if rest.startswith("."):
        sub_name = rest[1:]
        if not _NAME.fullmatch(sub_name):
            raise bad_request(f"invalid path {raw!r}", "invalidPath")
    elif rest:
        raise bad_request(f"invalid path {raw!r}", "invalidPath")
    if name.lower() in ("id", "meta", "schemas") and schema is rdef.core:
        raise bad_request(f"'{name}' is read-only", "mutability")
    attr = rdef.find(schema, name)
    if attr is None:
        if name.lower() in schema.ignored:
            return Path(schema, None, ignored=True, text=raw)
        raise bad_request(f"unknown attribute in path {raw!r}", "invalidPath")
    if value_filter is not None and not (attr.multi and attr.type == "complex"):
        raise bad_request(f"'{attr.name}' takes no value filter", "invalidPath")
    sub = None
    if sub_name is not None:
        if attr.type != "complex":
            raise bad_request(f"'{attr.name}' has no sub-attributes", "invalidPath")
        sub = attr.sub_attr(sub_name)
        if sub is None:
            if sub_name.lower() in attr.ignored_sub:
                return Path(schema, attr, ignored=True, text=raw)
            raise bad_request(f"unknown attribute in path {raw!r}", "invalidPath")
    if value_filter is not None:
        _check_value_filter(value_filter, attr)
    return Path(schema, attr, value_filter, sub, text=raw)


def _check_value_filter(node: Any, attr: Attr) -> None:
    if isinstance(node, scim_ast.Filter):
        if node.namespace is not None:
            raise bad_request("nested value filters are not supported", "invalidFilter")
        _check_value_filter(node.expr, attr)
    elif isinstance(node, scim_ast.LogExpr):
        _check_value_filter(node.expr1, attr)
        _check_value_filter(node.expr2, attr)
    elif isinstance(node, scim_ast.AttrExpr):
        path = node.attr_path
        if not isinstance(path.attr_name, str) or path.sub_attr is not None:
            raise bad_request("unsupported value filter", "invalidFilter")
        if attr.sub_attr(path.attr_name) is None and path.attr_name.lower() not in attr.ignored_sub:
            raise bad_request(f"unknown attribute '{path.attr_name}' in filter", "invalidFilter")
        if node.value.lower() not in _OPERATORS:
            raise bad_request(f"unknown operator '{node.value}'", "invalidFilter")
    else:
        raise bad_request("unsupported value filter", "invalidFilter")


_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "pr"})


def _comp_value(node: Any) -> Any:
    if node.comp_value is None:
        return None
    return node.comp_value.value


def _compare(op: str, actual: Any, expected: Any, case_exact: bool) -> bool:
    if op == "pr":
        return actual not in (None, "", [], {})
    if actual is None:
        return op == "ne"
    if isinstance(actual, bool):
        actual_text = "true" if actual else "false"
        wanted = str(expected).lower()
        return (actual_text == wanted) if op == "eq" else (actual_text != wanted)
    left, right = str(actual), str(expected)
    if not case_exact:
        left, right = left.lower(), right.lower()
    result = {
        "eq": left == right,
        "ne": left != right,
        "co": right in left,
        "sw": left.startswith(right),
        "ew": left.endswith(right),
        "gt": left > right,
        "lt": left < right,
        "ge": left >= right,
        "le": left <= right,
    }
    return result[op]


def value_matches(node: Any, item: Mapping[str, Any], attr: Attr) -> bool:
    """Evaluate a value filter (the part in brackets) against one value of `attr`."""
    if isinstance(node, scim_ast.Filter):
        result = value_matches(node.expr, item, attr)
        return not result if node.negated else result
    if isinstance(node, scim_ast.LogExpr):
        left = value_matches(node.expr1, item, attr)
        if node.op.lower() == "and":
            return left and value_matches(node.expr2, item, attr)
        return left or value_matches(node.expr2, item, attr)
    sub = attr.sub_attr(node.attr_path.attr_name)
    actual = item.get(sub.name) if sub is not None else None
    case_exact = sub.case_exact if sub is not None else False
    return _compare(node.value.lower(), actual, _comp_value(node), case_exact)


def _equalities(node: Any, attr: Attr) -> dict[str, Any] | None:
    """`type eq "work"` (and-ed equalities) as a new value's seed; None when not that shape."""
    if isinstance(node, scim_ast.Filter):
        return None if node.negated else _equalities(node.expr, attr)
    if isinstance(node, scim_ast.LogExpr):
        if node.op.lower() != "and":
            return None
        left, right = _equalities(node.expr1, attr), _equalities(node.expr2, attr)
        return None if left is None or right is None else {**left, **right}
    sub = attr.sub_attr(node.attr_path.attr_name)
    if sub is None or node.value.lower() != "eq":
        return None
    raw = _comp_value(node)
    if sub.type == "boolean":
        return {sub.name: str(raw).lower() == "true"}
    return {sub.name: str(raw)}


# --- PATCH ---------------------------------------------------------------------------------


def apply_patch(rdef: ResourceDef, state: Mapping[str, Any], body: Any) -> dict[str, Any]:
    """Apply a PatchOp request to a copy of `state` (canonical attributes); return the copy.

    Operations apply in order; any failure raises before the caller saves anything, which
    makes the request atomic (RFC 7644 §3.5.2).
    """
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object", "invalidSyntax")
    keys = _lower_keys(body)
    schemas = keys.get("schemas")
    if not isinstance(schemas, list) or PATCH_URN.lower() not in {str(s).lower() for s in schemas}:
        raise bad_request(f"'schemas' must be [\"{PATCH_URN}\"]", "invalidSyntax")
    operations = keys.get("operations")
    if not isinstance(operations, list) or not operations:
        raise bad_request("'Operations' must be a non-empty list", "invalidSyntax")
    doc = copy.deepcopy(dict(state))
    for operation in operations:
        _apply_operation(rdef, doc, operation)
    return doc


def _apply_operation(rdef: ResourceDef, doc: dict[str, Any], operation: Any) -> None:
    if not isinstance(operation, dict):
        raise bad_request("each operation must be an object", "invalidSyntax")
    fields = _lower_keys(operation)
    op = str(fields.get("op", "")).lower()  # Entra ID sends "Replace", "Add"
    if op not in ("add", "remove", "replace"):
        raise bad_request(f"unknown op {fields.get('op')!r}", "invalidSyntax")
    path = fields.get("path")
    has_value = "value" in fields
    value = fields.get("value")
    if path in (None, ""):
        if op == "remove":
            raise bad_request("'remove' needs a 'path'", "noTarget")
        if not isinstance(value, dict):
            raise bad_request("without a 'path', 'value' must be an object", "invalidValue")
        for key, item in value.items():
            lowered = str(key).lower()
            if lowered in ("schemas", "id", "meta"):
                continue  # Okta sends the id along; read-only attributes are ignored here
            extension = rdef.schema(lowered)
            if extension is not None and extension is not rdef.core and isinstance(item, dict):
                _apply_path(doc, op, Path(extension, None, text=str(key)), item, lenient=True)
                continue
            _apply_path(doc, op, parse_path(rdef, str(key)), item, lenient=True)
        return
    if op != "remove" and not has_value:
        raise bad_request(f"'{op}' needs a 'value'", "invalidValue")
    _apply_path(doc, op, parse_path(rdef, path), value, lenient=False, has_value=has_value)


def _apply_path(
    doc: dict[str, Any],
    op: str,
    path: Path,
    value: Any,
    *,
    lenient: bool,
    has_value: bool = True,
) -> None:
    if path.ignored:
        return
    schema_id = path.schema.id
    core = path.schema.id in (USER_URN, GROUP_URN)
    container = doc if core else doc.setdefault(schema_id, {})
    attr = path.attr
    if attr is None:  # the whole extension
        if op == "remove":
            doc.pop(schema_id, None)
            return
        if not isinstance(value, dict):
            raise bad_request(f"'{path.text}' must be an object")
        container.update(_extension_values(path.schema, value))
        _drop_empty(doc, schema_id)
        return
    if attr.read_only:
        if lenient:
            return
        raise bad_request(f"'{attr.name}' is read-only", "mutability")
    if not attr.multi:
        _apply_single(container, op, attr, path, value)
    else:
        _apply_multi(container, op, attr, path, value, has_value)
    if not core:
        _drop_empty(doc, schema_id)


def _extension_values(schema: SchemaDef, value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if str(key).lower() == "schemas":
            continue
        attr = schema.attr(str(key))
        if attr is None:
            if str(key).lower() in schema.ignored:
                continue
            raise bad_request(f"unknown attribute '{schema.id}:{key}'", "invalidPath")
        out[attr.name] = coerce(attr, item, f"{schema.id}:{attr.name}")
    return out


def _drop_empty(doc: dict[str, Any], key: str) -> None:
    if key in doc and doc[key] in (None, {}, []):
        del doc[key]
    if isinstance(doc.get(key), dict):
        for name in [k for k, v in doc[key].items() if v in (None, "", [], {})]:
            del doc[key][name]
        if not doc[key]:
            del doc[key]


def _apply_single(container: dict[str, Any], op: str, attr: Attr, path: Path, value: Any) -> None:
    if attr.type != "complex":
        coerced = None if op == "remove" else coerce(attr, value, attr.name)
        if coerced in (None, ""):
            container.pop(attr.name, None)
        else:
            container[attr.name] = coerced
        return
    current = dict(container.get(attr.name) or {})
    if path.sub is not None:
        coerced = None if op == "remove" else coerce(path.sub, value, path.text)
        if coerced in (None, ""):
            current.pop(path.sub.name, None)
        else:
            current[path.sub.name] = coerced
    elif op == "remove":
        current = {}
    else:
        # RFC 7644 §3.5.2.1/3: sub-attributes not in the value are left unchanged.
        current.update(coerce(attr, value, attr.name) or {})
    current = {k: v for k, v in current.items() if v not in (None, "")}
    if current:
        container[attr.name] = current
    else:
        container.pop(attr.name, None)


def _same_value(left: Mapping[str, Any], right: Mapping[str, Any], attr: Attr) -> bool:
    if "value" in left and "value" in right:
        sub = attr.sub_attr("value")
        exact = sub.case_exact if sub is not None else False
        a, b = str(left["value"]), str(right["value"])
        return a == b if exact else a.lower() == b.lower()
    return dict(left) == dict(right)


def _apply_multi(
    container: dict[str, Any], op: str, attr: Attr, path: Path, value: Any, has_value: bool
) -> None:
    items: list[dict[str, Any]] = [dict(i) for i in container.get(attr.name) or []]
    given: list[dict[str, Any]] = []
    if path.filter is None and path.sub is None:
        if op == "remove":
            if has_value and value is not None:
                # Entra ID removes members by value instead of by filter.
                targets = coerce(attr, value, attr.name) or []
                items = [i for i in items if not any(_same_value(i, t, attr) for t in targets)]
            else:
                items = []
        elif op == "add":
            given = coerce(attr, value, attr.name) or []
            for item in given:
                if not any(_same_value(i, item, attr) for i in items):
                    items.append(item)
        else:
            given = coerce(attr, value, attr.name) or []
            items = list(given)
    elif path.filter is not None:
        matched = [i for i, item in enumerate(items) if value_matches(path.filter, item, attr)]
        if op == "remove":
            if path.sub is not None:
                for index in matched:
                    items[index].pop(path.sub.name, None)
            else:
                items = [item for i, item in enumerate(items) if i not in matched]
        else:
            if path.sub is not None:
                new = {path.sub.name: coerce(path.sub, value, path.text)}
            else:
                new = coerce(Attr(attr.name, "complex", sub=attr.sub), value, path.text) or {}
            for index in matched:
                items[index].update(new)
            if not matched:
                seed = _equalities(path.filter, attr)
                if seed is None:
                    raise bad_request(f"no value matches {path.text!r}", "noTarget")
                items.append({**seed, **new})
                given = [items[-1]]
            else:
                given = [items[i] for i in matched]
    else:  # a sub-attribute of every value, e.g. "emails.value"
        if op == "remove":
            for item in items:
                item.pop(path.sub.name, None)  # type: ignore[union-attr]
        else:
            sub = path.sub
            assert sub is not None  # noqa: S101 - set by the branch condition
            coerced = coerce(sub, value, path.text)
            if items:
                for item in items:
                    item[sub.name] = coerced
            else:
                items = [{sub.name: coerced}]
            given = items
    if any(item.get("primary") is True for item in given):
        # RFC 7643 §2.4: at most one primary value; the one just set wins.
        for item in items:
            if item.get("primary") is True and not any(item is g for g in given):
                item["primary"] = False
    items = [{k: v for k, v in i.items() if v not in (None, "")} for i in items]
    items = [i for i in items if i]
    if items:
        container[attr.name] = items
    else:
        container.pop(attr.name, None)


# --- attributes / excludedAttributes -------------------------------------------------------


def _attribute_list(values: Iterable[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _resolve_projection(rdef: ResourceDef, text: str) -> tuple[str | None, str, str | None]:
    """(extension URN or None, attribute, sub-attribute) named by `text`; '' when unknown."""
    lowered = text.lower()
    schema = rdef.core
    rest = text
    for candidate in sorted(rdef.schemas, key=lambda s: -len(s.id)):
        urn = candidate.id.lower()
        if lowered == urn:
            return (None if candidate is rdef.core else candidate.id), "", None
        if lowered.startswith(urn + ":"):
            schema, rest = candidate, text[len(urn) + 1 :]
            break
    name, _, sub_name = rest.partition(".")
    if schema is rdef.core and name.lower() == "meta":
        return None, "meta", sub_name or None
    attr = rdef.find(schema, name)
    if attr is None:
        return None, "", None
    sub = attr.sub_attr(sub_name) if sub_name else None
    ext = None if schema is rdef.core else schema.id
    return ext, attr.name, (sub.name if sub is not None else (sub_name or None))


def project(
    rdef: ResourceDef,
    doc: Mapping[str, Any],
    attributes: Sequence[str] = (),
    excluded: Sequence[str] = (),
) -> dict[str, Any]:
    """Apply `attributes` or `excludedAttributes` (RFC 7644 §3.4.2.5); id and schemas stay."""
    wanted = _attribute_list(attributes)
    unwanted = _attribute_list(excluded)
    if wanted:
        out: dict[str, Any] = {"schemas": doc.get("schemas"), "id": doc.get("id")}
        for text in wanted:
            ext, name, sub = _resolve_projection(rdef, text)
            if ext is not None and not name:
                if ext in doc:
                    out[ext] = copy.deepcopy(doc[ext])
                continue
            if not name:
                continue
            source = doc.get(ext, {}) if ext else doc
            target = out.setdefault(ext, {}) if ext else out
            _copy_attribute(source, target, name, sub)
            if ext and not target:
                out.pop(ext, None)
        return out
    result = copy.deepcopy(dict(doc))
    for text in unwanted:
        ext, name, sub = _resolve_projection(rdef, text)
        if ext is not None and not name:
            result.pop(ext, None)
            continue
        if not name or (ext is None and name in ("id", "schemas")):
            continue
        container = result.get(ext, {}) if ext else result
        _remove_attribute(container, name, sub)
        if ext and not container:
            result.pop(ext, None)
    return result


def _copy_attribute(
    source: Mapping[str, Any], target: dict[str, Any], name: str, sub: str | None
) -> None:
    if name not in source:
        return
    value = source[name]
    if sub is None:
        target[name] = copy.deepcopy(value)
    elif isinstance(value, dict):
        if sub in value:
            target.setdefault(name, {})[sub] = value[sub]
    elif isinstance(value, list):
        existing = target.get(name)
        merged = existing if isinstance(existing, list) else [{} for _ in value]
        for index, item in enumerate(value):
            if isinstance(item, dict) and sub in item and index < len(merged):
                merged[index][sub] = item[sub]
        target[name] = merged


def _remove_attribute(container: dict[str, Any], name: str, sub: str | None) -> None:
    if name not in container:
        return
    if sub is None:
        del container[name]
        return
    value = container[name]
    if isinstance(value, dict):
        value.pop(sub, None)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                item.pop(sub, None)


# --- list responses and paging -------------------------------------------------------------


def paging(start: Any, count: Any) -> tuple[int, int]:
    """(startIndex, count) from query values (RFC 7644 §3.4.2.4): bad numbers are 400."""
    try:
        start_index = int(start) if start not in (None, "") else 1
        page_size = int(count) if count not in (None, "") else MAX_RESULTS
    except (TypeError, ValueError) as exc:
        raise bad_request("startIndex and count must be integers") from exc
    # "A value less than 1 SHALL be interpreted as 1"; a negative count as 0.
    return max(start_index, 1), min(max(page_size, 0), MAX_RESULTS)


def list_response(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    """A ListResponse (RFC 7644 §3.4.2)."""
    return {
        "schemas": [LIST_URN],
        "totalResults": total,
        "itemsPerPage": len(resources),
        "startIndex": start,
        "Resources": resources,
    }


def json_response(doc: Mapping[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(json.dumps(doc), content_type=CONTENT_TYPE, status=status)


def etag_of(doc: Mapping[str, Any]) -> str:
    """A weak entity tag over the representation (RFC 7644 §3.14), meta.version excluded."""
    body = {k: v for k, v in doc.items() if k != "meta"}
    meta = doc.get("meta") or {}
    body["lastModified"] = meta.get("lastModified")
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    return f'W/"{digest}"'


def iso(moment: datetime) -> str:
    """RFC 7643 §2.3.5 dateTime (xsd:dateTime with the offset)."""
    return moment.isoformat()


# --- filters to Django Q -------------------------------------------------------------------


@dataclass(frozen=True)
class FilterField:
    """How one filterable SCIM attribute maps to the ORM."""

    orm: str
    kind: Literal["text", "exact", "bool", "datetime", "id"] = "text"
    decode: Callable[[object], int | None] | None = None  # for kind "id"


_TEXT_OPS = {"eq": "iexact", "co": "icontains", "sw": "istartswith", "ew": "iendswith"}
_EXACT_OPS = {"eq": "exact", "co": "contains", "sw": "startswith", "ew": "endswith"}
_ORDER_OPS = {"gt": "gt", "ge": "gte", "lt": "lt", "le": "lte"}


def _field_q(spec: FilterField, op: str, value: Any) -> Q:
    if op == "pr":
        present = Q(**{f"{spec.orm}__isnull": False})
        if spec.kind in ("text", "exact"):
            present &= ~Q(**{spec.orm: ""})
        return present
    if spec.kind == "bool":
        if op not in ("eq", "ne") or str(value).lower() not in ("true", "false"):
            raise bad_request("booleans compare with eq or ne to true or false", "invalidFilter")
        q = Q(**{spec.orm: str(value).lower() == "true"})
        return ~q if op == "ne" else q
    if spec.kind == "id":
        if op not in ("eq", "ne"):
            raise bad_request("ids compare with eq or ne", "invalidFilter")
        assert spec.decode is not None  # noqa: S101 - every id field has a decoder
        pk = spec.decode(value)
        q = Q(**{spec.orm: pk}) if pk is not None else Q(**{f"{spec.orm}__in": []})
        return ~q if op == "ne" else q
    if spec.kind == "datetime":
        moment = parse_datetime(str(value))
        if moment is None or op not in {**_ORDER_OPS, "eq": "", "ne": ""}:
            raise bad_request(f"invalid dateTime comparison: {value!r}", "invalidFilter")
        if op in ("eq", "ne"):
            q = Q(**{spec.orm: moment})
            return ~q if op == "ne" else q
        return Q(**{f"{spec.orm}__{_ORDER_OPS[op]}": moment})
    if not isinstance(value, str):
        raise bad_request("this attribute compares with a string", "invalidFilter")
    lookups = _EXACT_OPS if spec.kind == "exact" else _TEXT_OPS
    if op == "ne":
        return ~Q(**{f"{spec.orm}__{lookups['eq']}": value})
    if op in lookups:
        return Q(**{f"{spec.orm}__{lookups[op]}": value})
    if op in _ORDER_OPS:
        return Q(**{f"{spec.orm}__{_ORDER_OPS[op]}": value})
    raise bad_request(f"unknown operator '{op}'", "invalidFilter")


class _QTranspiler(Transpiler):
    """scim2-filter-parser's Django Q transpiler, with typed comparisons per attribute.

    The library maps attribute paths and builds `and`/`or`/`not` and value paths
    (`members[value eq "…"]`); each comparison is built here so that case-exact attributes,
    booleans, ids and dateTimes compare correctly on SQLite and PostgreSQL.
    """

    def __init__(
        self,
        attr_map: Mapping[tuple[str, str | None, str | None], str],
        fields: Mapping[str, FilterField],
    ) -> None:
        super().__init__(attr_map)
        self.fields = fields

    def visit_AttrExpr(self, node: Any) -> Q:
        key = self.visit(node.attr_path)
        if key is None:
            raise bad_request("unknown attribute in filter", "invalidFilter")
        value = node.comp_value.value if node.comp_value is not None else None
        return _field_q(self.fields[key], node.value.lower(), value)


@dataclass(frozen=True)
class FilterMap:
    """The filterable attributes of one resource type."""

    fields: Mapping[str, FilterField]
    # (attribute, sub-attribute, schema URN) lower-case -> field key
    paths: Mapping[tuple[str, str | None, str | None], str] = field(default_factory=dict)

    def q(self, text: str) -> Q:
        """The Q for a filter; 400 invalidFilter for bad syntax or unknown attributes."""
        tree = parse_filter(text)
        try:
            self._check(tree, None)
            result = _QTranspiler(self.paths, self.fields).transpile(tree)
        except ScimError:
            raise
        except (ValueError, TypeError, NotImplementedError, AttributeError, RecursionError) as exc:
            raise bad_request(f"invalid filter: {text!r}", "invalidFilter") from exc
        if not isinstance(result, Q):
            raise bad_request(f"invalid filter: {text!r}", "invalidFilter")
        return result

    def _check(self, node: Any, namespace: Any) -> None:
        if isinstance(node, scim_ast.Filter):
            if node.namespace is not None and namespace is not None:
                raise bad_request("nested value filters are not supported", "invalidFilter")
            self._check(node.expr, node.namespace or namespace)
        elif isinstance(node, scim_ast.LogExpr):
            self._check(node.expr1, namespace)
            self._check(node.expr2, namespace)
        elif isinstance(node, scim_ast.AttrExpr):
            path = node.attr_path
            if not isinstance(path.attr_name, str):
                raise bad_request("unsupported filter expression", "invalidFilter")
            key: tuple[str, str | None, str | None]
            if namespace is not None:
                key = (namespace.attr_name.lower(), path.attr_name.lower(), _lower(namespace.uri))
            else:
                sub = path.sub_attr.value.lower() if path.sub_attr is not None else None
                key = (path.attr_name.lower(), sub, _lower(path.uri))
            if key not in self.paths:
                raise bad_request(f"cannot filter on '{_path_label(key)}'", "invalidFilter")
            if node.value.lower() not in _OPERATORS:
                raise bad_request(f"unknown operator '{node.value}'", "invalidFilter")
        else:
            raise bad_request("unsupported filter expression", "invalidFilter")


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _path_label(key: tuple[str, str | None, str | None]) -> str:
    name = f"{key[0]}.{key[1]}" if key[1] else key[0]
    return f"{key[2]}:{name}" if key[2] else name


def filter_map(
    resource: ResourceDef, entries: Mapping[str, tuple[FilterField, Sequence[str]]]
) -> FilterMap:
    """Build a FilterMap: field key -> (field, SCIM paths like 'name.givenName' or URN:attr)."""
    paths: dict[tuple[str, str | None, str | None], str] = {}
    for key, (_spec, names) in entries.items():
        for name in names:
            urn: str | None = None
            text = name
            for schema in resource.extensions:
                if name.lower().startswith(schema.id.lower() + ":"):
                    urn, text = schema.id.lower(), name[len(schema.id) + 1 :]
            attr, _, sub = text.partition(".")
            entry = (attr.lower(), sub.lower() or None, urn)
            paths[entry] = key
            if urn is None:  # core attributes may be written with their schema URN too
                paths[(attr.lower(), sub.lower() or None, resource.core.id.lower())] = key
    return FilterMap({k: spec for k, (spec, _names) in entries.items()}, paths)


def _user_id(value: object) -> int | None:
    return decode_id("User", value)


def _group_id(value: object) -> int | None:
    return decode_id("Group", value)


USER_FILTERS = filter_map(
    USER_RESOURCE,
    {
        "id": (FilterField("pk", "id", _user_id), ["id"]),
        "userName": (FilterField("email"), ["userName"]),
        # The stored emails are a list; filters on emails match the sign-in address.
        "email": (FilterField("email"), ["emails", "emails.value"]),
        "externalId": (FilterField("scim_link__external_id", "exact"), ["externalId"]),
        "displayName": (FilterField("display_name"), ["displayName"]),
        "givenName": (FilterField("scim_link__given_name"), ["name.givenName"]),
        "familyName": (FilterField("scim_link__family_name"), ["name.familyName"]),
        "active": (FilterField("is_active", "bool"), ["active"]),
        "created": (FilterField("date_joined", "datetime"), ["meta.created"]),
        "lastModified": (FilterField("scim_link__updated_at", "datetime"), ["meta.lastModified"]),
        "employeeNumber": (
            FilterField("scim_link__employee_number"),
            [f"{ENTERPRISE_URN}:employeeNumber"],
        ),
        "costCenter": (FilterField("scim_link__cost_center"), [f"{ENTERPRISE_URN}:costCenter"]),
        "organization": (
            FilterField("scim_link__organization"),
            [f"{ENTERPRISE_URN}:organization"],
        ),
        "division": (FilterField("scim_link__division"), [f"{ENTERPRISE_URN}:division"]),
        "department": (FilterField("scim_link__department"), [f"{ENTERPRISE_URN}:department"]),
    },
)

GROUP_FILTERS = filter_map(
    GROUP_RESOURCE,
    {
        "id": (FilterField("pk", "id", _group_id), ["id"]),
        "displayName": (FilterField("scim_link__display_name"), ["displayName"]),
        "externalId": (FilterField("external_id", "exact"), ["externalId"]),
        "member": (
            FilterField("memberships__user_id", "id", _user_id),
            ["members", "members.value"],
        ),
        "created": (FilterField("scim_link__created_at", "datetime"), ["meta.created"]),
        "lastModified": (FilterField("scim_link__updated_at", "datetime"), ["meta.lastModified"]),
    },
)


class UserFilterQuery(FilterQuery):
    """django-scim2's USER_FILTER_PARSER, on the Q transpiler instead of its SQL one."""

    filters = USER_FILTERS
    attr_map: ClassVar = dict(USER_FILTERS.paths)

    @classmethod
    def search(cls, filter_query: str, request: HttpRequest | None = None) -> Q:
        """The Q for `filter_query` (django-scim2 expects a queryset; our views take the Q)."""
        return cls.filters.q(filter_query)


class GroupFilterQuery(UserFilterQuery):
    """django-scim2's GROUP_FILTER_PARSER."""

    filters = GROUP_FILTERS
    attr_map: ClassVar = dict(GROUP_FILTERS.paths)
