"""Managed Identity Contributor and Operator control identities (their federated credentials,
their assignment to resources): privileged, so exception and four eyes (issue 14)."""

from django.db import migrations

GUIDS = ("e40ec5ca-96e0-45a2-b4ff-59039f2c2b59", "f1a07417-d97a-45cb-824c-7a7467783830")


def mark(apps, schema_editor):
    apps.get_model("identities", "CatalogRole").objects.filter(
        role_definition_guid__in=GUIDS
    ).update(privileged=True)


def unmark(apps, schema_editor):
    apps.get_model("identities", "CatalogRole").objects.filter(
        role_definition_guid__in=GUIDS
    ).update(privileged=False)


class Migration(migrations.Migration):
    dependencies = [("identities", "0007_resource_group_ownership")]

    operations = [migrations.RunPython(mark, unmark)]
