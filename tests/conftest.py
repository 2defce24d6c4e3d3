import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError
from rest_framework.test import APIClient

from marketplace.accounts.tokens import RefreshToken
from marketplace.celery import app as celery_app
from marketplace.celery import pending_taken
from orders.notifications import SEND_TASK
from orders.services import ROUTE_ORDER_TASK
from tests.worker import WorkerProcess


@pytest.fixture(autouse=True)
def _categories(request):
    """Reference data from a migration; a transactional test's flush removes it, so put it
    back for the tests after one."""
    if "django_db" in {mark.name for mark in request.node.iter_markers()} or (
        "transactional_db" in request.fixturenames
    ):
        request.getfixturevalue("django_db_blocker")
        from listings.catalog import ensure_categories  # noqa: PLC0415
        from listings.models import Category  # noqa: PLC0415

        if not Category.objects.exists():
            ensure_categories(Category)


@pytest.fixture(autouse=True)
def _cut_off_far_from_now(settings):
    """Routing puts an order placed after the daily cut-off hour a day later, by the real
    clock, so orders placed at 15:59:59 and 16:00:00 get different days. Each test runs with
    the cut-off about 12 hours from now (the workers it starts too, tests/worker.py): a test
    of minutes never crosses it, and at 1..23 o'clock midnight moves no day either. A test
    that sets the clock sets the cut-off it assumes."""
    settings.ROUTING_CUTOFF_HOUR = (timezone.localtime().hour + 12) % 24 or 23


@pytest.fixture(autouse=True)
def _nightly_plan_still_ahead(settings):
    """Goods whose stop failed or that a day's plan left out, and transfers received, move
    past tomorrow once tonight's nightly plan ran (NIGHTLY_SCHEDULE_HOUR), by the real
    clock. Each test runs with that hour still ahead, so one run at 22:00 moves goods by the
    days it expects. A test that sets the clock sets the hour it assumes."""
    settings.NIGHTLY_SCHEDULE_HOUR = 24  # no hour of a day reaches it


@pytest.fixture(autouse=True)
def _no_task_pending():
    """Each test starts with no routing or sending message marked waiting for a worker
    (marketplace.celery.send_unless_pending). A test before it in the same process that
    placed orders with no worker left the mark set for a minute, and a test placing orders
    for a worker it then starts sent no message at all: the worker sat idle (an access
    test placing an order just before the routing-reliability test)."""
    for task in (ROUTE_ORDER_TASK, SEND_TASK):
        pending_taken(task)


@pytest.fixture
def broker_down(monkeypatch):
    """Every message the app sends to Celery fails, as with Redis down."""

    def send_task(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(celery_app, "send_task", send_task)


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client signed in as `user` with a real JWT."""

    def make(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
        return client

    return make


@pytest.fixture
def celery_worker(transactional_db):
    """A real worker for one test (which needs `transaction=True`, so the worker, another
    process, sees its rows). It starts on an empty queue and stops with a warm shutdown
    before the test's tables are emptied, so no task of one test runs into the next."""
    celery_app.control.purge()
    for task in (ROUTE_ORDER_TASK, SEND_TASK):
        pending_taken(task)  # the purge took any message still pending
    worker = WorkerProcess()
    worker.start()
    yield worker
    worker.stop()
