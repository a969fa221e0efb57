"""The 16 KiB limit on request bodies: counted on the bytes that arrive (Content-Length,
a lying Content-Length, chunked transfer), refused with 413 without reading the rest, on
every route, in process and through a real uvicorn server over a socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from conftest import serving_app
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from kb.interfaces.web.app import create_app
from kb.interfaces.web.bodylimit import BodyLimit
from kb.search.service import SearchService

LIMIT = 16 * 1024  # the contract, written out: not imported from the code under test
TOO_LARGE = {"detail": "リクエストが大きすぎます"}
# Routes of every kind: pages, API, static files, docs, unknown paths.
PATHS = ["/", "/search", "/api/search", "/api/cells/x", "/static/style.css", "/docs", "/nope"]


def pieces(total: int, size: int = 1024) -> Iterator[bytes]:
    """``total`` bytes in pieces of ``size``: a body httpx sends chunked (no length)."""
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.fixture(scope="module")
def app(service: SearchService):
    return create_app(service=service)


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False)


def assert_refused(response) -> None:
    assert response.status_code == 413, response.text[:200]
    assert response.json() == TOO_LARGE
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in response.headers


# --- in process -------------------------------------------------------------------------


def test_a_body_of_exactly_16_kib_passes_and_one_byte_more_does_not(client) -> None:
    assert client.post("/api/search", content=b"x" * LIMIT).status_code == 405
    assert_refused(client.post("/api/search", content=b"x" * (LIMIT + 1)))


def test_a_chunked_body_is_counted(client) -> None:
    assert client.post("/api/search", content=pieces(LIMIT)).status_code == 405
    assert_refused(client.post("/api/search", content=pieces(LIMIT + 1)))
    assert_refused(client.post("/api/search", content=pieces(10 * LIMIT, 4096)))


def test_a_lying_content_length_is_not_believed(client) -> None:
    response = client.post(
        "/api/search", content=b"x" * (LIMIT + 1), headers={"content-length": "10"}
    )
    assert_refused(response)


@pytest.mark.parametrize("length", [str(LIMIT + 1), str(10**12), "abc", "-1", ""])
def test_a_declared_length_over_the_limit_or_malformed_is_refused(client, length: str) -> None:
    assert_refused(client.get("/api/search?q=看護", headers={"content-length": length}))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["POST", "PUT", "GET"])
def test_every_route_refuses_a_large_chunked_body(client, method: str, path: str) -> None:
    assert_refused(client.request(method, path, content=pieces(LIMIT + 1)))


def test_a_remembered_answer_does_not_skip_the_limit(client) -> None:
    url = "/api/search?q=看護師不足"
    assert client.get(url).status_code == 200  # now remembered for this build
    assert_refused(client.request("GET", url, content=pieces(LIMIT + 1)))
    assert client.get(url).status_code == 200


# --- the middleware on its own: a body within the limit reaches the route intact ----------


async def echo(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body), "start": body[:8].decode()})


@pytest.fixture(scope="module")
def echo_client() -> TestClient:
    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    refused = JSONResponse(TOO_LARGE, status_code=413)
    return TestClient(BodyLimit(app, limit=LIMIT, refuse=refused))


def test_a_body_within_the_limit_is_handed_on_unchanged(echo_client) -> None:
    body = b"kb-body!" + b"y" * (LIMIT - 8)
    sent = echo_client.post("/echo", content=body)
    chunked = echo_client.post("/echo", content=(body[i : i + 1000] for i in range(0, LIMIT, 1000)))
    for response in (sent, chunked):
        assert response.json() == {"length": LIMIT, "start": "kb-body!"}
    assert echo_client.post("/echo", content=b"").json() == {"length": 0, "start": ""}
    assert echo_client.post("/echo", content=body + b"!").status_code == 413


# --- a real server over a socket ------------------------------------------------------------


@pytest.fixture(scope="module")
def live(app) -> Iterator[int]:
    """The app behind a real uvicorn on a loopback port."""
    with serving_app(app) as port:
        yield port


def send_chunked(port: int, chunks: list[bytes], finish: bool) -> bytes:
    """POST ``chunks`` with chunked transfer encoding on a raw socket; without ``finish``
    the closing zero-length chunk is never sent, so the body never ends. Returns what the
    server answered within 20 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(
            b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
        )
        for chunk in chunks:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if finish:
            conn.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = conn.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_real_server_refuses_an_endless_chunked_body_after_16_kib(live: int) -> None:
    # 17 KiB sent and the body left open: the answer can only come if the server stops
    # reading at the limit instead of waiting for the rest.
    answer = send_chunked(live, [b"x" * 1024] * 17, finish=False)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


def test_a_real_server_takes_a_chunked_body_of_16_kib(live: int) -> None:
    answer = send_chunked(live, [b"x" * 1024] * 16, finish=True)
    assert answer.startswith(b"HTTP/1.1 405 "), answer[:200]  # read, then refused for POST
