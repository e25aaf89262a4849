"""The Apply API (`PUT /api/v1/apply`) and the export API (`GET /api/v1/export`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.views import principal_of
from gateway_project import manifests
from gateway_project.errors import ValidationFailed
from gateway_project.manifest_io import Document, ManifestError, Problem


class SourceSerializer(serializers.Serializer[None]):
    file = serializers.CharField(max_length=1000)
    index = serializers.IntegerField(min_value=0)


class ApplyInputSerializer(serializers.Serializer[None]):
    manifest = serializers.JSONField(help_text="One manifest object, or a list of them.")
    dry_run = serializers.BooleanField(default=False)
    show_diff = serializers.BooleanField(default=False)
    sync = serializers.BooleanField(default=False)
    sync_console_objects = serializers.BooleanField(default=False)
    sources = SourceSerializer(
        many=True, required=False, help_text="Where each manifest came from (for error messages)."
    )


class ApplyResultSerializer(serializers.Serializer[None]):
    type = serializers.CharField()
    name = serializers.CharField()
    action = serializers.ChoiceField(choices=["created", "updated", "unchanged", "deleted"])
    notes = serializers.ListField(child=serializers.CharField(), required=False)
    diff = serializers.CharField(required=False)


class ApplyOutputSerializer(serializers.Serializer[None]):
    dry_run = serializers.BooleanField()
    results = ApplyResultSerializer(many=True)


def _documents(data: dict[str, Any]) -> list[Document]:
    raw = data["manifest"]
    items = raw if isinstance(raw, list) else [raw]
    sources = data.get("sources") or []
    if sources and len(sources) != len(items):
        raise ManifestError([Problem("<request>", "sources", "must have one entry per manifest")])
    return [
        Document(item, sources[i]["file"], sources[i]["index"])
        if sources
        else Document(item, "manifest", i)
        for i, item in enumerate(items)
    ]


def problems_response(exc: ManifestError) -> Response:
    first = exc.problems[0] if exc.problems else None
    body = {
        "error": {
            "message": str(first) if first else "invalid manifest",
            "fields": {f"{p.where}:{p.path}": [p.message] for p in exc.problems},
            "problems": [p.as_dict() for p in exc.problems],
        }
    }
    return Response(body, status=exc.status)


class ApplyApi(APIView):
    @extend_schema(
        request=ApplyInputSerializer,
        responses=ApplyOutputSerializer,
        summary="Create or update objects from manifests, atomically",
    )
    def put(self, request: Request) -> Response:
        data = ApplyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        options = data.validated_data
        try:
            results = manifests.apply(
                _documents(options),
                actor=principal_of(request),
                dry_run=options["dry_run"],
                sync=options["sync"],
                sync_console_objects=options["sync_console_objects"],
            )
        except ManifestError as exc:
            return problems_response(exc)
        rows = [r.as_dict(with_diff=options["show_diff"]) for r in results]
        return Response({"dry_run": options["dry_run"], "results": rows})


class ExportApi(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("type", str, many=True)],
        summary="Every object as a manifest (secrets as references, never values)",
    )
    def get(self, request: Request) -> Response:
        types = request.query_params.getlist("type")
        unknown = set(types) - set(manifests.kinds())
        if unknown:
            raise ValidationFailed.field("type", f"unknown type(s): {', '.join(sorted(unknown))}")
        items = manifests.export(types or None, actor=principal_of(request))
        return Response(
            {
                "items": [
                    {"directory": kind.directory, "name": name, "manifest": manifest}
                    for kind, name, manifest in items
                ]
            }
        )
