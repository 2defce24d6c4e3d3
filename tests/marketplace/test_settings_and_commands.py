"""Production settings, the database connection's options, and the operator's create_staff
command."""

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from django.core import checks
from django.core.management import CommandError, call_command
from django.db import connection

from marketplace import embedded
from marketplace.accounts.models import Role, User
from tests.factories import ServiceCenterFactory, StaffFactory

BASE_DIR = Path(__file__).resolve().parents[2]
LAUNCHER = [sys.executable, "-m", "marketplace.embedded", "exec", "--"]
STRONG_KEY = "k3y-" + "x8Qz!vR2#mW9" * 5
STRONG_WEBHOOK_SECRET = "wh-" + "Jq3vN8sPz2Lk" * 3


def manage(*args, settings="production", unset=("SECRET_KEY",), launcher=(), **env):
    """manage.py in a process of its own, with `settings` and the environment changed."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": f"marketplace.settings.{settings}"}
    for name in unset:
        environment.pop(name, None)
    environment.update(env)
    return subprocess.run(  # noqa: S603
        [*launcher, sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def embedded_shell(data_dir: Path, code: str) -> subprocess.CompletedProcess:
    """`manage.py shell -c code` under the embedded launcher, its data in `data_dir`."""
    return manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        code,
        settings="dev",
        unset=["DATABASE_URL"],
        launcher=LAUNCHER,
        EMBEDDED_DATA_DIR=str(data_dir),
    )


def test_production_passes_check_deploy_cleanly():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="market.example.cn",
        PAYMENT_WEBHOOK_SECRET=STRONG_WEBHOOK_SECRET,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("utc_time", ["07:00:00", "18:00:03", "19:00:05"])
def test_the_model_checks_pass_at_every_time_of_day(utc_time):
    """A time of day as a field's fixed default (a center's hours, a vehicle's shift) is
    taken by Django's fields.W161 check as a time today, and warned about within 10 s of
    now: `check --deploy --fail-level WARNING` failed at 19:00:00 UTC (a clean clone's
    test run did). The defaults are callables, which the check leaves alone."""
    at = datetime.fromisoformat(f"2026-11-30T{utc_time}+00:00")
    with time_machine.travel(at, tick=False):
        found = checks.run_checks(tags=[checks.Tags.models])
    assert [message.id for message in found] == []


@pytest.mark.parametrize(
    "key",
    [
        "",
        "too-short",
        # long enough, yet what Django's check --deploy calls insecure, never run at start
        "x" * 50,
        "abab" * 20,
        "django-insecure-" + "q7Rt2vLp9WzKs4" * 3,
    ],
)
def test_production_refuses_to_start_without_a_real_secret_key(key):
    result = manage("check", SECRET_KEY=key)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(("given", "allowed"), [(None, "False"), ("true", "True")])
def test_production_loads_no_demo_accounts_unless_told_to(given, allowed):
    env = {"SECRET_KEY": STRONG_KEY, "PAYMENT_WEBHOOK_SECRET": STRONG_WEBHOOK_SECRET}
    if given is not None:
        env["DEMO_DATA_ALLOWED"] = given
    read = "from django.conf import settings; print(settings.DEMO_DATA_ALLOWED)"
    result = manage("shell", "-c", read, unset=("SECRET_KEY", "DEMO_DATA_ALLOWED"), **env)
    assert (result.returncode, result.stdout.split()[-1]) == (0, allowed), result.stderr


def test_hosts_and_origins_listed_with_spaces_after_the_commas_are_served():
    """ALLOWED_HOSTS=market.example.cn, www.market.example.cn, as people write a list: the
    second host kept its leading space, so every request to it was 400 (DisallowedHost), and
    an origin so listed was never trusted for CSRF."""
    read = (
        "from django.conf import settings; from django.test import Client; "
        "print(settings.ALLOWED_HOSTS, settings.CSRF_TRUSTED_ORIGINS); "
        "print(Client().get('/no-such-page/', HTTP_HOST='www.market.example.cn').status_code)"
    )
    result = manage(
        "shell",
        "--verbosity",
        "0",
        "-c",
        read,
        settings="dev",
        ALLOWED_HOSTS="market.example.cn, www.market.example.cn ,",
        CSRF_TRUSTED_ORIGINS=" https://market.example.cn,  https://www.market.example.cn",
    )
    assert result.returncode == 0, result.stderr
    hosts, status = result.stdout.splitlines()
    assert hosts == (
        "['market.example.cn', 'www.market.example.cn'] "
        "['https://market.example.cn', 'https://www.market.example.cn']"
    )
    assert status == "404"


def test_production_answers_json_only_even_with_debug_set_in_the_environment():
    env = {
        "SECRET_KEY": STRONG_KEY,
        "PAYMENT_WEBHOOK_SECRET": STRONG_WEBHOOK_SECRET,
        "DEBUG": "true",
    }
    read = (
        "from django.conf import settings; "
        "print(settings.DEBUG, settings.REST_FRAMEWORK['DEFAULT_RENDERER_CLASSES'])"
    )
    result = manage("shell", "-c", read, unset=("SECRET_KEY",), **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "False ['rest_framework.renderers.JSONRenderer']"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("command", ["seed_demo", "simulate_day"])
def test_demo_commands_refuse_where_demo_data_is_off(command, settings):
    settings.DEMO_DATA_ALLOWED = False
    with pytest.raises(CommandError, match="DEMO_DATA_ALLOWED"):
        call_command(command)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_statement_run_five_times_is_prepared_on_the_connection():
    """DB_PREPARED_STATEMENTS (on by default): the server binds the parameters and, from the
    sixth run on, runs the statement PostgreSQL prepared; a client-side binding never would."""
    expected = (
        'SELECT "accounts_user"."id" AS "pk" FROM "accounts_user" WHERE '
        'UPPER("accounts_user"."name"::text) LIKE UPPER($1) ORDER BY 1 DESC LIMIT 7'
    )

    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT statement FROM pg_prepared_statements WHERE statement = %s", [expected]
            )
            return [row[0] for row in cursor.fetchall()]

    probe = User.objects.filter(name__iendswith="prepared-probe").order_by("-pk")
    assert list(probe.values_list("pk", flat=True)[:7]) == []
    assert prepared() == []
    for _ in range(5):
        assert list(probe.values_list("pk", flat=True)[:7]) == []
    assert prepared() == [expected]


def test_without_a_database_url_commands_reach_the_embedded_postgresql():
    """`make run` and `make test` on a machine with no PostgreSQL: the launcher starts one and
    hands over its socket as `?host=` in DATABASE_URL; that option must survive the others
    the settings add, or Django would knock at the default socket instead."""
    data_dir = Path(tempfile.mkdtemp(prefix="emb-", dir="/tmp"))  # a socket path is short
    show = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SHOW data_directory')\n"
        "    print(cursor.fetchone()[0])\n"
        "print(sorted(connection.settings_dict['OPTIONS'].items()))"
    )
    try:
        result = embedded_shell(data_dir, show)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    socket_dir = str(data_dir / "postgres")
    assert result.stdout.splitlines() == [
        socket_dir,
        str(
            [
                ("connect_timeout", 10),
                ("host", socket_dir),
                ("options", "-c jit=off"),
                ("prepare_threshold", 5),
                ("server_side_binding", True),
            ]
        ),
    ]


def test_the_embedded_postgresql_starts_in_a_data_folder_too_deep_for_a_socket():
    """A Unix socket's path holds about 100 bytes; a clone deep in a workspace puts the
    data folder's past that. pgserver then puts the socket in its runtime folder, but the
    launcher kept that one in the data folder too, so `make run` stopped with "Could not
    find a suitable socket path"; and the URL it gave named the data folder's socket."""
    top = Path(tempfile.mkdtemp(prefix="emb-", dir="/tmp"))
    data_dir = top / ("deep" * 25)
    show = (
        "from django.db import connection\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SHOW data_directory')\n"
        "    print(cursor.fetchone()[0])"
    )
    try:
        result = embedded_shell(data_dir, show)
    finally:
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(embedded._runtime_dir(data_dir), ignore_errors=True)
    assert (result.returncode, result.stdout) == (0, f"{data_dir / 'postgres'}\n"), result.stderr


def test_a_database_that_takes_the_connection_and_never_answers_is_given_up_on():
    """A PostgreSQL that hangs (or a proxy in front of a dead one) takes the connection and
    never answers. libpq waits for it without end unless told a connect_timeout: a request
    held its web worker until gunicorn killed it, and each /health/ left a thread waiting
    for good. A new connection now gives up after DATABASE_CONNECT_TIMEOUT (10 s)."""
    from django.db.backends.postgresql.base import DatabaseWrapper  # noqa: PLC0415

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel takes connections; nothing ever reads or answers them
        params = {**connection.settings_dict, "HOST": "127.0.0.1"}
        params["PORT"] = str(silent.getsockname()[1])
        wrapper = DatabaseWrapper(params)
        give_up = threading.Timer(40, silent.close)  # a connection that waits still ends
        give_up.start()
        started = time.monotonic()
        try:
            with pytest.raises(Exception) as refused:  # noqa: PT011 - psycopg's, then Django's
                wrapper.get_new_connection(wrapper.get_connection_params())
        finally:
            give_up.cancel()
        elapsed = time.monotonic() - started
    assert 9 < elapsed < 20, f"{elapsed:.1f} s"
    assert "timeout" in str(refused.value).lower()


def test_development_keeps_no_connection_past_its_request():
    """runserver answers each request on a new thread; a connection kept past the request
    would stay open with its thread, and they piled up to PostgreSQL's limit."""
    show = "from django.conf import settings; print(settings.DATABASES['default']['CONN_MAX_AGE'])"
    result = manage("shell", "--verbosity", "0", "-c", show, settings="dev", unset=["CONN_MAX_AGE"])
    assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr


@pytest.mark.django_db
def test_create_staff_by_center_name_and_id(capsys):
    center = ServiceCenterFactory(name="石门镇服务中心")
    call_command(
        "create_staff", phone="137 0000 0099", password="a-good-pass-99", center="石门镇服务中心"
    )
    call_command(
        "create_staff",
        phone="13700000098",
        password="a-good-pass-98",
        center=str(center.pk),
        name="李明",
    )
    staff = list(
        User.objects.order_by("phone").values_list("phone", "role", "service_center", "name")
    )
    assert staff == [
        ("+8613700000098", Role.STAFF, center.pk, "李明"),
        ("+8613700000099", Role.STAFF, center.pk, "石门镇服务中心 staff"),
    ]
    assert User.objects.get(phone="+8613700000099").check_password("a-good-pass-99")
    assert "Created staff +8613700000099" in capsys.readouterr().out


@pytest.mark.django_db
def test_create_staff_refuses_digits_that_are_one_centers_id_and_anothers_name():
    """--center 2 where center 2 is 城关 and another center is named "2": the digits were
    taken for the id whatever the names, so staff meant for "2" went to 城关. Such digits are
    refused, naming both, and id:2 or name:2 says which; digits that are only an id (or only
    a name) still choose it."""
    by_id = ServiceCenterFactory(name="城关服务中心")
    by_name = ServiceCenterFactory(name=str(by_id.pk))
    with pytest.raises(CommandError, match=rf"ambiguous.*id:{by_id.pk}.*name:{by_id.pk}"):
        call_command(
            "create_staff", phone="13700000091", password="a-good-pass-91", center=str(by_id.pk)
        )
    assert not User.objects.exists()

    call_command(
        "create_staff", phone="13700000091", password="a-good-pass-91", center=f"id:{by_id.pk}"
    )
    call_command(
        "create_staff", phone="13700000090", password="a-good-pass-90", center=f"name:{by_id.pk}"
    )
    call_command(
        "create_staff", phone="13700000089", password="a-good-pass-89", center=str(by_name.pk)
    )
    assert dict(User.objects.values_list("phone", "service_center")) == {
        "+8613700000091": by_id.pk,
        "+8613700000090": by_name.pk,
        "+8613700000089": by_name.pk,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "center",
    [
        "{arabic_indic}",
        "{full_width}",
        "+{pk}",
        " {pk}",
        "{pk}_0",
        "id:",
        "id:x",
        "id:{full_width}",
        "id:" + "9" * 30,
        "9" * 30,
        "name:",
    ],
)
def test_create_staff_takes_an_id_only_in_ascii_digits(center):
    """int() read Arabic-Indic and full-width digits, a sign, spaces and underscores (1_0 is
    10) as an id: such a --center chose a center by an id it does not spell."""
    found = ServiceCenterFactory(name="石门镇服务中心")
    ServiceCenterFactory(name="另一个服务中心", pk=10 * found.pk)
    digits = str(found.pk)
    center = center.format(
        pk=digits,
        arabic_indic=digits.translate({ord("0") + d: 0x0660 + d for d in range(10)}),
        full_width=digits.translate({ord("0") + d: 0xFF10 + d for d in range(10)}),
    )
    with pytest.raises(CommandError, match="No service center"):
        call_command("create_staff", phone="13700000088", password="a-good-pass-88", center=center)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_create_staff_refuses_unknown_center_and_taken_phone():
    existing = StaffFactory(phone="+8613700000097")
    with pytest.raises(CommandError, match="No service center"):
        call_command(
            "create_staff", phone="13700000096", password="a-good-pass-96", center="Nowhere"
        )
    with pytest.raises(CommandError, match="phone_taken"):
        call_command(
            "create_staff",
            phone="13700000097",
            password="a-good-pass-97",
            center=str(existing.service_center_id),
        )
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_create_staff_refuses_an_odd_center_or_a_long_name_and_fills_a_blank_one(capsys):
    center = ServiceCenterFactory(name="石门镇服务中心")
    with pytest.raises(CommandError, match="No service center '²'"):
        call_command("create_staff", phone="13700000095", password="a-good-pass-95", center="²")
    with pytest.raises(CommandError, match="invalid_name"):
        call_command(
            "create_staff",
            phone="13700000094",
            password="a-good-pass-94",
            center=str(center.pk),
            name="名" * 101,
        )
    assert not User.objects.exists()
    call_command(
        "create_staff",
        phone="13700000093",
        password="a-good-pass-93",
        center=str(center.pk),
        name="   ",
    )
    assert User.objects.get().name == "石门镇服务中心 staff"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("李\n明", "Control characters"),
        ("李明\x1b[31m", "Control characters"),
        ("\u200b\ufeff", "may not be blank"),
    ],
)
def test_create_staff_refuses_a_name_of_control_characters_or_nothing_visible(name, why):
    """As register and /me/ refuse them (TextLineField): a new line or a terminal escape
    breaks the lines it is printed in, and a zero-width name shows nobody. The command
    stored them as given."""
    center = ServiceCenterFactory()
    with pytest.raises(CommandError, match=f"invalid_name: .*{why}"):
        call_command(
            "create_staff",
            phone="13700000092",
            password="a-good-pass-92",
            center=str(center.pk),
            name=name,
        )
    assert not User.objects.exists()


def test_make_run_where_demo_data_is_off_sets_up_without_the_demo_county():
    """DEMO_DATA_ALLOWED=false in .env (as production has it): seed_demo refuses, and
    `make run`, which runs it after migrate, stopped there with a traceback. Its set-up now
    asks for the demo county only where it is allowed, and goes on without it."""
    (seed,) = [argv for argv in embedded.SETUP if argv[0] == "seed_demo"]
    result = manage(*seed, settings="dev", unset=[], DEMO_DATA_ALLOWED="false")
    assert result.returncode == 0, result.stderr
    assert "Demo data is off here" in result.stdout


@pytest.mark.django_db
def test_seed_demo_if_allowed_seeds_nothing_where_demo_data_is_off(settings):
    settings.DEMO_DATA_ALLOWED = False
    call_command("seed_demo", "--if-allowed")
    assert not User.objects.exists()


def test_make_run_serves_this_machine_only():
    """`make run` serves the dev settings, whose SECRET_KEY signs every JWT and is in this
    repository: on the network, anyone could sign tokens for any user. Its web server
    listens on the loopback address, as the README's http://127.0.0.1:8000 says."""
    web = embedded.run_processes(8123)["web"]
    address = web[web.index("runserver") + 1]
    host, port = address.rsplit(":", 1)
    assert (ipaddress.ip_address(host).is_loopback, port) == (True, "8123")


def _running(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, dead and not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal")
def test_make_run_killed_outright_stops_the_processes_it_started():
    """Killed outright (SIGKILL, an IDE's stop button, the out-of-memory killer), the
    launcher runs no clean-up: its web server, worker and beat went on without it, so the
    next `make run` found its port taken, or on another port started a second beat, and
    every periodic task ran twice. They now end with it."""
    launcher_code = (
        "import sys, time\n"
        "from marketplace import embedded\n"
        "child = embedded.start([sys.executable, '-c', 'import time; time.sleep(300)'], None)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    launcher = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", launcher_code], cwd=BASE_DIR, stdout=subprocess.PIPE, text=True
    )
    child = int(launcher.stdout.readline())
    try:
        assert _running(child)
        launcher.kill()
        launcher.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(child)
    finally:
        launcher.kill()
        launcher.stdout.close()
        if _running(child):
            os.kill(child, signal.SIGKILL)


def test_a_second_make_run_on_the_same_data_folder_starts_nothing(tmp_path):
    """A second `make run` on the data folder of a running one (another terminal, another
    port) started its own web server, worker and beat: every periodic task twice, two
    beats writing one schedule file. It now stops at once, naming the first one; and once
    the first is gone, killed outright or not, the next starts."""
    holder_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from marketplace import embedded\n"
        "with embedded.one_run_per_data_dir(Path(sys.argv[1])):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(300)\n"
    )
    holder = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", holder_code, str(tmp_path)],
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        second = subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "marketplace.embedded",
                "run",
                "--port",
                str(embedded._free_port()),
            ],
            cwd=BASE_DIR,
            env={**os.environ, "EMBEDDED_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert f"Another `run` (pid {holder.pid}) is using {tmp_path}" in second.stderr
        assert sorted(path.name for path in tmp_path.iterdir()) == ["run.lock"]  # nothing ran
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
    with embedded.one_run_per_data_dir(tmp_path):  # the kernel let go of the killed one's
        assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"


def _embedded_servers(data_dir: Path, redis_port: int) -> list[int]:
    """Pids of the PostgreSQL and Redis servers still running for the embedded data folder."""
    import psutil  # noqa: PLC0415 - pgserver's dependency

    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir / "postgres") in cmdline or (
            redis_port and f"redis-server 127.0.0.1:{redis_port}" in cmdline
        ):
            found.append(process.info["pid"])
    return [pid for pid in found if _running(pid)]


def test_the_servers_of_a_launcher_killed_outright_are_stopped_by_the_next_one():
    """A launcher killed outright leaves the embedded PostgreSQL and Redis running, for the
    next one to reuse. That next one used them and left them running too, and so did every
    one after: pgserver stops its server when the last process on its list of users exits,
    and the killed launcher stayed on that list; Redis was stopped only by the launcher that
    started it. The next launcher now stops both when it is done."""
    data_dir = Path(tempfile.mkdtemp(prefix="emb-", dir="/tmp"))  # a socket path is short
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.dev",
        "EMBEDDED_DATA_DIR": str(data_dir),
    }
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    hold = "import os, time; print(os.getpid(), flush=True); time.sleep(300)"
    killed = subprocess.Popen(  # noqa: S603
        [*LAUNCHER, sys.executable, "-c", hold],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    redis_port = 0
    try:
        held_by = int(killed.stdout.readline())  # the services are up
        redis_port = int((data_dir / "redis" / "port").read_text().split()[0])
        killed.kill()
        killed.wait(timeout=10)
        os.kill(held_by, signal.SIGKILL)
        assert len(_embedded_servers(data_dir, redis_port)) >= 2  # postgres (+ its own), redis
        after = subprocess.run(  # noqa: S603
            [*LAUNCHER, sys.executable, "-c", "print('done')"],
            cwd=BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert (after.returncode, after.stdout) == (0, "done\n"), after.stderr
        deadline = time.monotonic() + 10
        while _embedded_servers(data_dir, redis_port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _embedded_servers(data_dir, redis_port) == []
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
    finally:
        killed.kill()
        killed.stdout.close()
        for pid in _embedded_servers(data_dir, redis_port):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(data_dir, ignore_errors=True)
