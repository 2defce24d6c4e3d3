"""The JWTs of this API as accounts reads them (simplejwt's, with the blacklist app)."""

from rest_framework_simplejwt import tokens
from rest_framework_simplejwt.settings import api_settings

# The claim holding User.sign_outs as it was when the token was issued. A refresh token's
# access tokens copy it. Tokens issued before the claim existed read as 0.
SIGN_OUTS_CLAIM = "sign_outs"

# An access token's device session: the jti of the refresh token it was made from, so that
# logging that refresh token out refuses it too (marketplace.api.authentication). Access
# tokens made before the claim existed have none and live until they expire.
SESSION_CLAIM = "sid"


class RefreshToken(tokens.RefreshToken):
    """simplejwt's, carrying the user's count of sign-outs of every device: a sign-out
    counts one more, and every token issued before it, access tokens included, is refused
    (marketplace.api.authentication) without a query of its own. The access tokens it makes
    name it as their session."""

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token[SIGN_OUTS_CLAIM] = user.sign_outs
        return token

    @property
    def access_token(self) -> tokens.AccessToken:
        access = super().access_token
        access[SESSION_CLAIM] = self[api_settings.JTI_CLAIM]
        return access


class RevocableRefreshToken(tokens.RefreshToken):
    """A refresh token read for logout: its signature, expiry and type are checked as for
    a refresh, but one already blacklisted is taken too, so a logout retried over a flaky
    network succeeds again rather than answering 401."""

    def check_blacklist(self) -> None:
        return None
