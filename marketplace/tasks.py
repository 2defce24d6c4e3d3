"""Project-wide tasks."""

from celery import shared_task


@shared_task(ignore_result=False, soft_time_limit=5, time_limit=10)
def ping(token: str) -> dict[str, str]:
    """Answer from a worker: proves the broker, the worker and the result backend all work."""
    return {"pong": token}


@shared_task(soft_time_limit=100, time_limit=120)
def prune_idempotency_records() -> int:
    """Delete Idempotency-Key records past their expiry (idempotent)."""
    from django.utils import timezone  # noqa: PLC0415

    from marketplace.api.models import IdempotencyRecord  # noqa: PLC0415

    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
