"""gunicorn workers whose own error answers are the API's problem+json.

gunicorn answers a request it cannot read before Django sees it: a request line past
`limit_request_line` (414), too many or too large headers (431), a malformed request line,
method or header (400), and a few more. It wrote them as an HTML page, the one answer of the
server without a machine-readable `code`. Through these workers it is the problem+json every
other error is, with `Connection: close` as before.

Which exception is the client's fault and which status it gets stay gunicorn's
(`Worker.handle_error`, with its log lines and access log): only its writing step is
replaced. handle_error is handed a stand-in for the client's socket that keeps the HTML page
gunicorn writes to it; the page's status decides the answer written to the real socket. The
alternative, replacing `gunicorn.util.write_error` for the whole process, would change every
worker class in it, ours or not.

Run them by path: `--worker-class marketplace.gunicorn_workers.Sync` (gunicorn's sync worker)
or `marketplace.gunicorn_workers.GThread` (gthread, with `--threads`). Neither name ends in
"SyncWorker": gunicorn runs its own gthread worker instead of a class so named when
`--threads` is above 1, and would write HTML again.
"""

import json
import re
import socket
from http import HTTPStatus
from typing import Any, NamedTuple

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker
from gunicorn.workers.sync import SyncWorker

from marketplace.api.problems import PROBLEM_CONTENT_TYPE, problem


class ServerError(NamedTuple):
    reason: str  # of the status line and the body's `title`
    code: str
    detail: str


# By the status gunicorn chose. The reasons are RFC 9110's: gunicorn's 501 says "Bad Request".
SERVER_ERRORS = {
    400: ServerError(
        "Bad Request",
        "bad_request",
        "The request is not well-formed HTTP/1.1: its request line, a header or its chunked "
        "body could not be read.",
    ),
    403: ServerError("Forbidden", "permission_denied", "Permission denied."),
    414: ServerError(
        "URI Too Long",
        "uri_too_long",
        "The request line (method, path and query string) is longer than the server accepts.",
    ),
    417: ServerError(
        "Expectation Failed",
        "expectation_failed",
        "The server cannot meet the request's Expect header; only 100-continue is understood.",
    ),
    431: ServerError(
        "Request Header Fields Too Large",
        "headers_too_large",
        "The request has more header fields than the server accepts, or one too large.",
    ),
    500: ServerError("Internal Server Error", "server_error", "Server error."),
    501: ServerError(
        "Not Implemented",
        "not_implemented",
        "The request uses something the server does not support, such as its Transfer-Encoding.",
    ),
}
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


def server_error(status: int) -> ServerError:
    if status in SERVER_ERRORS:
        return SERVER_ERRORS[status]
    fallback = SERVER_ERRORS[400 if status < 500 else 500]  # a status gunicorn adds later
    return fallback._replace(reason=HTTPStatus(status).phrase)


def error_answer(status: int) -> bytes:
    """The whole HTTP answer, head and problem+json body, for a status gunicorn chose."""
    error = server_error(status)
    body = problem(status, error.code, error.detail, title=error.reason)
    payload = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {error.reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "\r\n"
    )
    return head.encode("latin-1") + payload


class _ErrorPageCatcher:
    """Stands in for the client's socket while gunicorn's handle_error runs: what it sends
    (its HTML error page, through util.write_error) is kept here, not sent. Anything else it
    asks of the socket goes to the real one."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self.written = b""

    def gettimeout(self) -> float:
        return 0.0  # util.write_nonblock: nothing to switch, sendall() at once

    def sendall(self, data: bytes) -> None:
        self.written += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class ProblemErrorsMixin:
    """Worker.handle_error, its page written as problem+json."""

    def handle_error(self, req, client, addr, exc) -> None:
        catcher = _ErrorPageCatcher(client)
        super().handle_error(req, catcher, addr, exc)
        status_line = _STATUS_LINE.match(catcher.written)
        # No page at all, or one not starting with a status line: sent as gunicorn wrote it.
        answer = error_answer(int(status_line[1])) if status_line else catcher.written
        if not answer:
            return
        try:
            util.write_nonblock(client, answer)
        except OSError:  # the client may be gone already
            self.log.debug("Failed to send error message.")


class Sync(ProblemErrorsMixin, SyncWorker):
    """gunicorn's sync worker (one request at a time per process)."""

    @classmethod
    def check_config(cls, cfg, log) -> None:
        if cfg.threads > 1:
            # gunicorn's own `sync` would run as gthread here; this class cannot
            log.warning(
                "--threads %s is ignored by the sync worker: for threads use "
                "--worker-class marketplace.gunicorn_workers.GThread",
                cfg.threads,
            )


class GThread(ProblemErrorsMixin, ThreadWorker):
    """gunicorn's gthread worker (a pool of `--threads` threads per process)."""


# gunicorn's own names of the two (`--worker-class sync`), as the benchmarks take them, to ours.
WORKER_CLASS_PATHS = {
    "sync": f"{__name__}.{Sync.__name__}",
    "gthread": f"{__name__}.{GThread.__name__}",
}
