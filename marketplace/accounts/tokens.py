"""The JWTs of this API as accounts reads them (simplejwt's, with the blacklist app)."""

from rest_framework_simplejwt import tokens

# The claim holding User.sign_outs as it was when the token was issued. A refresh token's
# access tokens copy it. Tokens issued before the claim existed read as 0.
SIGN_OUTS_CLAIM = "sign_outs"


class RefreshToken(tokens.RefreshToken):
    """simplejwt's, carrying the user's count of sign-outs of every device: a sign-out
    counts one more, and every token issued before it, access tokens included, is refused
    (marketplace.api.authentication) without a query of its own."""

    @classmethod
    def for_user(cls, user):
        token = super().for_user(user)
        token[SIGN_OUTS_CLAIM] = user.sign_outs
        return token


class RevocableRefreshToken(tokens.RefreshToken):
    """A refresh token read for logout: its signature, expiry and type are checked as for
    a refresh, but one already blacklisted is taken too, so a logout retried over a flaky
    network succeeds again rather than answering 401."""

    def check_blacklist(self) -> None:
        return None
