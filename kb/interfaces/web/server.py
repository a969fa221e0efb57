"""Running the web app: the socket is bound before anything is said about it, so a port
that is taken or impossible is one clear Japanese line, and the address printed is one
that already accepts connections (port 0 picks a free one)."""

from __future__ import annotations

import asyncio
import errno
import gc
import signal
import socket

from fastapi import FastAPI

from kb.core.errors import KbError
from kb.retrieval.vocabulary import dictionary_form

BACKLOG = 2048  # uvicorn's default
# The usual reasons, said in Japanese; others keep the system's wording.
_REASONS = {
    errno.EADDRINUSE: "ほかのプログラムが使っています",
    errno.EACCES: "このユーザーには使えないポートです",
    errno.EADDRNOTAVAIL: "このPCのアドレスではありません",
}


def bind(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port``; KbError naming the problem otherwise."""
    if not 0 <= port <= 65535:
        raise KbError(f"ポート番号は 0〜65535 にしてください（{port}）")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as exc:
        raise KbError(f"アドレス {host} を使えません（{exc.strerror or exc}）") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = _REASONS.get(exc.errno, exc.strerror or str(exc))
        raise KbError(
            f"{host} のポート {port} で待ち受けられません（{reason}）。"
            "別のポートを --port で指定するか、そのポートを使っているプログラムを終了してください"
        ) from None
    return sock


def url_of(sock: socket.socket) -> str:
    """Where a browser reaches ``sock``: ``http://127.0.0.1:8000/``."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(app: FastAPI, sock: socket.socket, loop: asyncio.AbstractEventLoop | None) -> None:
    """Serve ``app`` on the bound ``sock`` until interrupted (Ctrl+C, SIGTERM).

    With a ``loop`` (the embedding model's, :func:`kb.retrieval.embedding.serving_loop`)
    the server runs on it, so a request's query is embedded on the thread that handles
    the request; this thread then only waits for the signals that stop it.
    """
    import uvicorn

    # httptools parses a request in C: a quarter of a millisecond less than h11 per request.
    server = uvicorn.Server(uvicorn.Config(app, http="httptools", log_level="warning"))
    # The English dictionary forms load on first use (0.1 s): before the first request,
    # not during it.
    dictionary_form("loading")
    # What is loaded by now (index, analyser, templates, libraries) lives as long as the
    # server: frozen, the collector's full passes skip it (they paused a request now and
    # then for tens of milliseconds).
    gc.collect()
    gc.freeze()
    if loop is None:
        server.run(sockets=[sock])
        return
    running = asyncio.run_coroutine_threadsafe(server.serve(sockets=[sock]), loop)

    def stop(*_: object) -> None:
        # As uvicorn does on its own thread: finish open requests; a second signal, now.
        server.force_exit = server.should_exit
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    running.result()
