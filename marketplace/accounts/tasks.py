from axes.handlers.database import AxesDatabaseHandler
from celery import shared_task
from django.conf import settings


@shared_task(soft_time_limit=100, time_limit=120)
def prune_login_logs() -> int:
    """Delete login audit rows older than LOGIN_LOG_RETENTION_DAYS (idempotent)."""
    return AxesDatabaseHandler().reset_logs(age_days=settings.LOGIN_LOG_RETENTION_DAYS)
