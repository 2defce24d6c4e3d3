"""What an operator deploys with: docker-compose.yml as the README describes it.

No Docker engine runs in the suite, so these read the file as compose reads it (YAML with
its merge keys) and check what the README and the settings promise of it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from gunicorn.config import Config

from marketplace import gunicorn_workers

BASE_DIR = Path(__file__).resolve().parents[2]
MEDIA_ROOT_IN_IMAGE = "/app/media"  # Dockerfile: WORKDIR /app, media/ owned by the app user


def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


def mounts(service: dict) -> dict[str, str]:
    """Container path: volume name, of a service's short-syntax volumes."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        found[target] = source
    return found


def test_web_and_worker_share_the_uploaded_photos():
    """The web container writes a listing photo under MEDIA_ROOT; a worker makes its
    thumbnail from that file. In containers of their own they must share one volume there,
    or the worker finds no file (the photo is marked gone) and every recreated container
    loses the uploads."""
    services = compose()["services"]
    web_media = mounts(services["web"]).get(MEDIA_ROOT_IN_IMAGE)
    assert web_media is not None
    assert mounts(services["worker"]).get(MEDIA_ROOT_IN_IMAGE) == web_media
    assert web_media in compose()["volumes"]


def fixed_host_ports(service: dict) -> list[str]:
    """The host ports a service binds by number (`8000:8000`), as opposed to letting Docker
    pick one (`8000`)."""
    return [str(port).rsplit(":", 1)[0] for port in service.get("ports", []) if ":" in str(port)]


def test_every_service_the_docs_scale_can_run_several_containers():
    """Two containers of one service cannot both bind host port 8000: the second fails with
    "port is already allocated", so a scale command the README gives must not need that."""
    services = compose()["services"]
    for doc in ("README.md", "docker-compose.yml"):
        scaled = re.findall(r"--scale (\w+)=(\d+)", (BASE_DIR / doc).read_text())
        assert scaled, doc
        for name, replicas in scaled:
            if int(replicas) > 1:
                assert fixed_host_ports(services[name]) == [], (doc, name)


def test_only_the_hosts_loopback_reaches_the_web_port():
    """TLS and the client's address come from the reverse proxy in front: reached from
    outside directly, gunicorn would take a client's own X-Forwarded-For as its address, and
    the login lock-out and register limit would key on whatever it writes there."""
    for port in compose()["services"]["web"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), port


def test_every_long_running_service_has_a_health_check():
    """As the README says: postgres, redis, web, worker and beat each with a health check (the
    one-shot migrate exits)."""
    services = compose()["services"]
    running = [name for name in services if name != "migrate"]
    assert sorted(running) == ["beat", "postgres", "redis", "web", "worker"]
    assert [name for name in running if "healthcheck" not in services[name]] == []


def documented_variables() -> set[str]:
    """The variables .env.example lists: one `# NAME=default` line each."""
    text = (BASE_DIR / ".env.example").read_text()
    return set(re.findall(r"^# ?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))


def test_env_example_lists_every_variable_the_settings_read():
    """base.py says so: an operator finds every knob, with its default, in .env.example."""
    read = set()
    for module in (BASE_DIR / "marketplace" / "settings").glob("*.py"):
        read |= set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", module.read_text()))
    assert "SECRET_KEY" in read
    assert sorted(read - documented_variables()) == []


def test_the_image_build_names_no_secret_and_gives_collectstatic_ones_production_takes():
    """The Dockerfile's collectstatic runs under production settings, which refuse to load
    without a real SECRET_KEY and webhook secret. Written into the Dockerfile, such values
    are public with the code, and production would take them at runtime if anyone passed
    them on: they are drawn at random for that one command instead. Its RUN line, run here by
    a shell as Docker's does, with `check` for collectstatic: two builds draw two different
    pairs, and production starts with each."""
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    run = re.search(r"^RUN (SECRET_KEY=.*?collectstatic --noinput)", dockerfile, re.M | re.S)
    assert run is not None
    command = run.group(1).replace("\\\n", " ")
    assert "build-only" not in command
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.production",
    }

    def build(then: str) -> str:
        done = subprocess.run(  # noqa: S603
            ["/bin/sh", "-c", command.replace("python manage.py collectstatic --noinput", then)],
            cwd=BASE_DIR,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    secrets = 'os.environ["SECRET_KEY"], os.environ["PAYMENT_WEBHOOK_SECRET"]'
    show = f"python -c 'import os; print({secrets})'"
    assert build(show) != build(show)
    assert "System check identified no issues" in build("python manage.py check")


def image_command() -> list[str]:
    """The Dockerfile's CMD, in its JSON (exec) form, as Docker reads it."""
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])$", dockerfile, re.M | re.S)
    assert cmd is not None
    return json.loads(cmd.group(1).replace("\\\n", " "))


def test_the_web_container_serves_with_the_projects_sync_worker():
    """gunicorn's own worker classes answer what gunicorn refuses itself (a request line or
    headers too large, a malformed request) with an HTML page; the project's write the API's
    problem+json. The web service runs the image's command, whose class gunicorn loads as
    given: the sync worker, as before, with no threads."""
    command = image_command()
    assert command[:2] == ["gunicorn", "marketplace.wsgi:application"]
    worker_class = command[command.index("--worker-class") + 1]
    assert worker_class == "marketplace.gunicorn_workers.Sync"
    assert "--threads" not in command
    cfg = Config()
    cfg.set("worker_class", worker_class)
    assert cfg.worker_class is gunicorn_workers.Sync
    assert "command" not in compose()["services"]["web"]
