from django.apps import AppConfig


class IdentitiesConfig(AppConfig):
    name = "identities"
    verbose_name = "Workload identities"
    default_auto_field = "django.db.models.BigAutoField"
