"""Provider kinds: each names its manifest type, auth schemas, secret fields and defaults.

Adding a kind means adding one `ProviderKind` here (and its upstream adapter in the proxy);
no other kind changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from gateway_project.manifests import ManifestModel

AWS_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "sa-east-1",
    "me-central-1",
    "me-south-1",
    "af-south-1",
    "il-central-1",
    "us-gov-west-1",
    "us-gov-east-1",
)


class ApiKeyAuth(ManifestModel):
    type: Literal["api-key"]
    api_key: str = Field(min_length=1)


class OpenAIApiKeyAuth(ManifestModel):
    """The apply-API doc of the mirrored product spells it `openai-api-key`."""

    type: Literal["openai-api-key"]
    api_key: str = Field(min_length=1)


class AccessKeyAuth(ManifestModel):
    type: Literal["access-key-based"]
    access_key_id: str = Field(min_length=16, max_length=128)
    secret_access_key: str = Field(min_length=1)


class AssumedRoleAuth(ManifestModel):
    type: Literal["assumed-role-based"]
    assumed_role_arn: str = Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
    external_id: str = ""


OpenAIAuth = Annotated[ApiKeyAuth | OpenAIApiKeyAuth, Field(discriminator="type")]
AnthropicAuth = ApiKeyAuth
BedrockAuth = Annotated[AccessKeyAuth | AssumedRoleAuth | ApiKeyAuth, Field(discriminator="type")]

# Which auth_data fields are secret (encrypted, write-only) for every auth type.
SECRET_AUTH_FIELDS = {"api_key", "secret_access_key"}


@dataclass(frozen=True)
class ProviderKind:
    """Static facts about one provider kind."""

    kind: str
    label: str
    integration_type: str  # `integration/model/<x>`
    default_base_url: str
    needs_region: bool = False

    @property
    def manifest_type(self) -> str:
        return f"provider-account/{self.kind}"


KINDS: dict[str, ProviderKind] = {
    k.kind: k
    for k in (
        ProviderKind("openai", "OpenAI", "integration/model/openai", "https://api.openai.com/v1"),
        ProviderKind(
            "anthropic", "Anthropic", "integration/model/anthropic", "https://api.anthropic.com"
        ),
        ProviderKind(
            "aws-bedrock", "AWS Bedrock", "integration/model/bedrock", "", needs_region=True
        ),
    )
}


def bedrock_endpoint(region: str) -> str:
    """The Bedrock runtime endpoint of a region."""
    return f"https://bedrock-runtime.{region}.amazonaws.com"
