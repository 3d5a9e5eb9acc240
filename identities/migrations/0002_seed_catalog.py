"""Seed the role catalog from AZURE-FACTS.md §5 (later edits are made in the admin)."""

from django.db import migrations

from identities.catalog import catalog_ensure


def seed(apps, schema_editor):
    catalog_ensure(apps.get_model("identities", "CatalogRole"))


class Migration(migrations.Migration):
    dependencies = [("identities", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
