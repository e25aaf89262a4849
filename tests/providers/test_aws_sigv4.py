"""Our SigV4 signer agrees with botocore's on the requests the gateway makes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from providers.aws_sigv4 import AwsCredentials, sign


@pytest.mark.parametrize(
    ("method", "url", "body", "token"),
    [
        (
            "POST",
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1:0/converse",
            b'{"messages":[]}',
            "",
        ),
        (
            "GET",
            "https://bedrock.eu-west-1.amazonaws.com/foundation-models?byProvider=anthropic&a=b%20c",
            b"",
            "session-token",
        ),
        (
            "POST",
            "http://127.0.0.1:9000/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprofile%2Fx/converse-stream",
            b"{}",
            "",
        ),
    ],
)
def test_signature_matches_botocore(method, url, body, token):
    creds = AwsCredentials("AKIDEXAMPLEKEY12345", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    region = "eu-west-1" if "eu-west-1" in url else "us-east-1"
    request = AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    # Botocore signs the body hash header when present; the gateway always sends it.
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    botocore_creds = Credentials(creds.access_key_id, creds.secret_access_key, token or None)
    SigV4Auth(botocore_creds, "bedrock", region).add_auth(request)
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    ours = sign(
        method=method,
        url=url,
        headers={"Content-Type": "application/json"},
        body=body,
        credentials=creds,
        region=region,
        service="bedrock",
        now=when,
    )

    assert ours["authorization"] == request.headers["Authorization"]
