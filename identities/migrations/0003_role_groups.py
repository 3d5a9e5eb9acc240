"""Create the portal's role groups (requesters, approvers, auditors, admins) and their permissions."""

from django.db import migrations

from identities.roles import groups_ensure


def create_groups(apps, schema_editor):
    groups_ensure(
        apps.get_model("auth", "Group"),
        apps.get_model("auth", "Permission"),
        apps.get_model("contenttypes", "ContentType"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("identities", "0002_seed_catalog"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
