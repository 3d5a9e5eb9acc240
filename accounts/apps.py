from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """People and machines: API tokens, single sign-on, sign-in throttling.

    The label stays "portal": these models and their migrations were the `portal` app's before
    the apps were split, and the label names their tables and migration history. Keeping it means
    no table is renamed and every existing database migrates as before.
    """

    name = "accounts"
    label = "portal"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from accounts import sso  # noqa: F401  (registers the single sign-on settings check)
