"""The proxy's lean HTTP/1.1 transport over TLS, keep-alive and verification."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from proxy.transport import LeanTransport
from tests.fakes.secret_servers import self_signed_certificate
from tests.servers import free_port


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"hello over tls"})


@pytest.fixture
def tls_server(tmp_path: Path) -> Any:
    cert, key = self_signed_certificate(tmp_path)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            hello,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"https://127.0.0.1:{port}/", cert
    server.should_exit = True
    thread.join(timeout=10)


def test_https_with_a_trusted_ca_reuses_the_connection(tls_server):
    url, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))

    async def calls() -> list[str]:
        async with httpx.AsyncClient(transport=LeanTransport(ssl_context=context)) as client:
            return [(await client.get(url)).text for _ in range(3)]

    assert asyncio.run(calls()) == ["hello over tls"] * 3


def test_https_with_an_untrusted_certificate_is_refused(tls_server):
    url, _cert = tls_server

    async def call() -> None:
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            await client.get(url)

    with pytest.raises(httpx.ConnectError):
        asyncio.run(call())
