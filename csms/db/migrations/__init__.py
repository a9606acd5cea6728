"""Alembic migrations of the CSMS database (see csms.db.schema; `csms db upgrade`).

A new table or column in csms/db/models.py needs a revision here: copy the newest file in
versions/, set down_revision to its revision, write the op.create_table / op.add_column calls by
hand. tests/integration/test_migrations.py fails while head and the models differ.
"""
