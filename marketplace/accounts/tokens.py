"""The JWTs of this API as accounts reads them (simplejwt's, with the blacklist app)."""

from rest_framework_simplejwt.tokens import RefreshToken


class RevocableRefreshToken(RefreshToken):
    """A refresh token read for logout: its signature, expiry and type are checked as for
    a refresh, but one already blacklisted is taken too, so a logout retried over a flaky
    network succeeds again rather than answering 401."""

    def check_blacklist(self) -> None:
        return None
