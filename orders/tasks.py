"""Background work of orders."""

from celery import shared_task

from orders import payments


@shared_task(soft_time_limit=100, time_limit=120)
def expire_unpaid_orders() -> int:
    """The beat sweeper for prepaid orders unpaid past their due time: each is cancelled and
    restocked. Idempotent: an order expired once is no longer awaiting payment."""
    return payments.orders_expire_unpaid()


from orders.notifications import send_notifications, send_unsent_notifications  # noqa: E402, F401
