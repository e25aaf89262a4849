"""Output shapes of the providers API: manifests with secrets as references."""

from __future__ import annotations

from rest_framework import serializers


class ConnectionResultSerializer(serializers.Serializer[None]):
    ok = serializers.BooleanField()
    message = serializers.CharField()


class ManifestItemSerializer(serializers.Serializer[None]):
    manifest = serializers.DictField(help_text="The object's manifest; secrets as references.")
    can_manage = serializers.BooleanField()
