"""On PostgreSQL, refuse UPDATE and DELETE on the audit table (no-op on other databases).

TRUNCATE stays possible: it is a DDL-level privilege for operators (and the test runner's flush),
not something the application does; audit_verify still notices a truncated chain's tail only
against an exported copy.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION identities_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'identities_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER auditevent_append_only
    BEFORE UPDATE OR DELETE ON identities_auditevent
    FOR EACH ROW EXECUTE FUNCTION identities_auditevent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS auditevent_append_only ON identities_auditevent;
DROP FUNCTION IF EXISTS identities_auditevent_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("identities", "0003_role_groups")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
