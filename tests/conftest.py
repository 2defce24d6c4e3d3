import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests.worker import WorkerProcess


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


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """One real worker for the session; tests using it need `transaction=True` so the
    worker (another process) sees their rows."""
    worker = WorkerProcess()
    with django_db_blocker.unblock():
        worker.start()
    yield worker
    worker.stop()
