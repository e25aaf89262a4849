"""Errors in the caller's API dialect (OpenAI or Anthropic), with the right status."""

from __future__ import annotations

from typing import Any, Literal

Dialect = Literal["openai", "anthropic"]

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class ProxyError(Exception):
    """Answered to the caller as `status` with `message`; `code` and `param` for OpenAI."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type
        self.headers = headers or []


def error_body(dialect: Dialect, error: ProxyError) -> dict[str, Any]:
    """The error object of the dialect."""
    if dialect == "anthropic":
        kind = error.error_type or ANTHROPIC_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
    kind = error.error_type or OPENAI_TYPES.get(error.status, "api_error")
    return {
        "error": {
            "message": error.message,
            "type": kind,
            "param": error.param,
            "code": error.code,
        }
    }


def unauthorized() -> ProxyError:
    # One answer for every bad token: nothing to learn from guessing.
    return ProxyError(401, "Invalid or expired token.", code="invalid_api_key")


def model_not_permitted(model: str) -> ProxyError:
    # Same message whether the model exists or not: existence is not revealed.
    return ProxyError(
        403,
        f"You are not allowed to use model '{model}'.",
        code="model_not_permitted",
        param="model",
    )


def bad_request(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, code="invalid_request", param=param)
