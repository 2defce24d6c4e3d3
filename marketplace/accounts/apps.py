from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "marketplace.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Bind shared_task to the project's Celery app in every Django process (web, shell,
        # tests), not only in workers. Done here rather than in marketplace/__init__.py so
        # that `python -m marketplace.embedded` stays free of Django settings.
        from marketplace import celery  # noqa: F401, PLC0415
