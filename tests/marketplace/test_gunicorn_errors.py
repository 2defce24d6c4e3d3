"""What gunicorn answers itself, before Django sees the request: a request line or headers
past its limits, a request it cannot parse. Through the project's worker classes it is the
API's problem+json with a stable `code`, as every other error is, not gunicorn's HTML page.

Each worker class runs in a real gunicorn (once for the module) on the test database, and
is sent raw bytes over a socket, as a client or a scanner on the internet would send them.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from gunicorn.config import Config
from gunicorn.glogging import Logger

from marketplace import gunicorn_workers
from marketplace.api.problems import PROBLEM_CONTENT_TYPE
from tests.worker import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
LOG_DIR = BASE_DIR / ".data"
WORKER_CLASSES = {
    "sync": "marketplace.gunicorn_workers.Sync",
    "gthread": "marketplace.gunicorn_workers.GThread",
}
# The test database is made for a session that has tests marked to use it: these use it
# through gunicorn, another process (the categories a migration wrote, committed).
pytestmark = pytest.mark.django_db
CATEGORIES = b"GET /api/v1/categories/ HTTP/1.1\r\nHost: localhost\r\n"


class Answer:
    """An HTTP/1.1 answer read whole (the server closes the connection after it)."""

    def __init__(self, raw: bytes):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status_line = status_line
        self.headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def problem(self) -> dict:
        assert len(self.body) == int(self.headers["content-length"])
        return json.loads(self.body)


def send(port: int, request: bytes, *, close: bool = True) -> Answer:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if close:  # a request of ours that gunicorn can read asks it to close afterwards
            request = request.replace(b"\r\n", b"\r\nConnection: close\r\n", 1)
        sock.sendall(request + b"\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return Answer(b"".join(chunks))


@pytest.fixture(scope="module", params=sorted(WORKER_CLASSES))
def gunicorn_port(request, django_db_setup):
    """A gunicorn with the project's worker class on the test database; its port."""
    port = free_port()
    threads = "2" if request.param == "gthread" else "1"
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / f"gunicorn-{request.param}-{settings.TEST_RUN_ID}.log"
    env = {
        **os.environ,  # DATABASE_URL and REDIS_URL when given
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.test",
        "DATABASE_NAME": connection.settings_dict["NAME"],
        "TEST_RUN_ID": settings.TEST_RUN_ID,
    }
    with log_path.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
            [
                # the console script, as the Dockerfile runs it (no `-m`: the worker class is
                # found on the path gunicorn gives itself)
                str(Path(sys.executable).with_name("gunicorn")), "marketplace.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", "1",
                "--worker-class", WORKER_CLASSES[request.param],
                "--threads", threads,
                "--log-level", "warning",
                "--access-logfile", "-",  # as the Dockerfile: its line of an error is written too
            ],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown takes the workers too
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited ({process.returncode}); see {log_path}")
            try:
                status_line = send(port, CATEGORIES).status_line
            except OSError:  # not listening yet
                pass
            else:
                if status_line != "HTTP/1.1 200 OK":
                    pytest.fail(f"GET /api/v1/categories/: {status_line}; see {log_path}")
                break
            if time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer within 30 s; see {log_path}")
            time.sleep(0.1)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already when it failed to start
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def assert_problem(answer: Answer, status_line: str, code: str) -> dict:
    assert answer.status_line == status_line
    assert answer.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert answer.headers["connection"] == "close"
    body = answer.problem()
    status, _, reason = status_line.removeprefix("HTTP/1.1 ").partition(" ")
    assert body["type"] == "about:blank"
    assert body["status"] == int(status)
    assert body["title"] == reason
    assert body["code"] == code
    assert body["detail"] == gunicorn_workers.SERVER_ERRORS[int(status)].detail
    return body


def test_a_normal_request_is_served_by_the_app(gunicorn_port):
    answer = send(gunicorn_port, CATEGORIES)
    assert answer.status_line == "HTTP/1.1 200 OK"
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(json.loads(answer.body)["results"], list)


def test_a_request_line_past_the_limit_is_414_uri_too_long(gunicorn_port):
    line = b"GET /api/v1/listings/?q=" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: localhost\r\n"
    answer = send(gunicorn_port, line, close=False)
    assert_problem(answer, "HTTP/1.1 414 URI Too Long", "uri_too_long")


def test_too_many_headers_are_431_headers_too_large(gunicorn_port):
    headers = b"".join(b"X-Filler-%d: x\r\n" % n for n in range(200))
    answer = send(gunicorn_port, CATEGORIES + headers)
    assert_problem(answer, "HTTP/1.1 431 Request Header Fields Too Large", "headers_too_large")


def test_a_header_past_the_limit_is_431_headers_too_large(gunicorn_port):
    answer = send(gunicorn_port, CATEGORIES + b"X-Filler: " + b"x" * 20_000 + b"\r\n")
    assert_problem(answer, "HTTP/1.1 431 Request Header Fields Too Large", "headers_too_large")


def test_a_garbage_request_line_is_400_bad_request(gunicorn_port):
    answer = send(gunicorn_port, b"\x16\x03\x01 hello there\r\n", close=False)
    assert_problem(answer, "HTTP/1.1 400 Bad Request", "bad_request")


def test_a_malformed_header_is_400_bad_request(gunicorn_port):
    answer = send(gunicorn_port, CATEGORIES + b"Bad Header: x\r\n")
    assert_problem(answer, "HTTP/1.1 400 Bad Request", "bad_request")


def test_a_request_read_whole_but_refused_is_400_bad_request(gunicorn_port):
    """Chunked twice: gunicorn refuses a request it has read, and writes its access log
    line (with the socket handle_error was given) before the answer."""
    request = b"POST /api/v1/orders/ HTTP/1.1\r\nHost: localhost\r\n"
    answer = send(gunicorn_port, request + b"Transfer-Encoding: chunked, chunked\r\n")
    assert_problem(answer, "HTTP/1.1 400 Bad Request", "bad_request")


def test_an_expectation_other_than_100_continue_is_417(gunicorn_port):
    answer = send(gunicorn_port, CATEGORIES + b"Expect: the-unexpected\r\n")
    assert_problem(answer, "HTTP/1.1 417 Expectation Failed", "expectation_failed")


def test_an_unknown_transfer_coding_is_501(gunicorn_port):
    request = b"POST /api/v1/orders/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: snappy\r\n"
    answer = send(gunicorn_port, request)
    assert_problem(answer, "HTTP/1.1 501 Not Implemented", "not_implemented")


@pytest.mark.parametrize("worker_class", [gunicorn_workers.Sync, gunicorn_workers.GThread])
def test_an_error_of_the_server_itself_is_500_server_error(worker_class):
    """What gunicorn answers 500 (an exception out of the application before it answered, or
    a header it tried to send that is not HTTP) cannot be caused from outside through
    Django, which answers its own 500s: the worker's handle_error is called as gunicorn
    calls it, on one end of a socket pair."""
    cfg = Config()
    worker = worker_class(1, os.getpid(), [], None, 30, cfg, Logger(cfg))
    served, client = socket.socketpair()
    try:
        worker.handle_error(None, served, ("127.0.0.1", 40000), RuntimeError("a bug"))
        served.close()
        answer = Answer(client.recv(65536))
    finally:
        client.close()
        worker.tmp.close()
    assert_problem(answer, "HTTP/1.1 500 Internal Server Error", "server_error")


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("path", sorted(WORKER_CLASSES.values()))
def test_gunicorn_runs_the_class_it_is_given_with_any_number_of_threads(path, threads):
    """gunicorn replaces a worker class whose name ends in "SyncWorker" by its own gthread
    worker (HTML errors again) when --threads is above 1; ours are run as given."""
    cfg = Config()
    cfg.set("worker_class", path)
    cfg.set("threads", threads)
    module, _, name = path.rpartition(".")
    assert module == gunicorn_workers.__name__
    assert cfg.worker_class is getattr(gunicorn_workers, name)
