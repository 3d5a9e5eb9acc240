"""Each notification gets an opaque message id (the Standard Webhooks `webhook-id` it is sent
with) instead of exposing its internal key: added empty, filled row by row (one random id each),
then made unique and required."""

from typing import Any

from django.db import migrations, models

import identities.models.notifications


def fill_message_ids(apps: Any, schema_editor: Any) -> None:
    notification = apps.get_model("identities", "Notification")
    rows = list(notification.objects.filter(message_id__isnull=True).only("pk"))
    for row in rows:
        row.message_id = identities.models.notifications.new_message_id()
    notification.objects.bulk_update(rows, ["message_id"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("identities", "0015_webhook_secrets_encrypted"),
    ]

    operations = [
        migrations.AddField(
            model_name="notification",
            name="message_id",
            field=models.CharField(max_length=40, null=True, editable=False),
        ),
        migrations.RunPython(fill_message_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="notification",
            name="message_id",
            field=models.CharField(
                default=identities.models.notifications.new_message_id,
                editable=False,
                max_length=40,
                unique=True,
            ),
        ),
    ]
