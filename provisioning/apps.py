from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The domain asks Azure what exists through identities.scope_lookup; the Resource Graph
        # queries live here, beside the gateway (the import direction stays provisioning →
        # identities, as for identities.work).
        from identities import scope_lookup
        from provisioning import resource_graph

        scope_lookup.register(
            lookup=resource_graph.lookup, team_resources=resource_graph.team_resources
        )
