"""Project-wide tasks."""

from celery import shared_task


@shared_task(ignore_result=False, soft_time_limit=5, time_limit=10)
def ping(token: str) -> dict[str, str]:
    """Answer from a worker: proves the broker, the worker and the result backend all work."""
    return {"pong": token}
