from axes.handlers.database import AxesDatabaseHandler
from celery import shared_task
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken


@shared_task(soft_time_limit=100, time_limit=120)
def prune_login_logs() -> int:
    """Delete login audit rows older than LOGIN_LOG_RETENTION_DAYS (idempotent)."""
    return AxesDatabaseHandler().reset_logs(age_days=settings.LOGIN_LOG_RETENTION_DAYS)


@shared_task(soft_time_limit=100, time_limit=120)
def prune_expired_tokens() -> int:
    """Delete the records of refresh tokens past their expiry, with their blacklist rows
    (idempotent; simplejwt's `flushexpiredtokens`, counted). An expired token is refused
    by its own `exp` claim, blacklisted or not. Kept for one access token lifetime more:
    an access token made from it in its last minutes lives that long, and a logout
    refuses it by the refresh token's blacklist row, which would go with it. Returns how
    many tokens went."""
    cutoff = timezone.now() - jwt_settings.ACCESS_TOKEN_LIFETIME
    _, deleted = OutstandingToken.objects.filter(expires_at__lte=cutoff).delete()
    return deleted.get(OutstandingToken._meta.label, 0)
