"""Indexes for the request log's filters. The index plan of the observability reads:

Raw request logs (`proxy_requestlog`, ~1,000,000 rows a month at the benchmark's volume):

- `proxy_log_started_idx (started_at DESC)` (proxy): the request log's pages, newest or oldest
  first, with or without a time range. Keyset pagination repeats `started_at <= cursor` as
  an index condition, so page 1,000 costs what page 1 costs. Filters that match a fair share
  of rows (a team, a provider account, a metadata value, a status class, the Data Access
  rules themselves) are applied while walking this index: 50 matches come quickly. The
  retention task's `started_at < cutoff` deletes walk it too.
- `proxy_log_caller_idx (caller_type, caller_id, started_at DESC)` (proxy): `own_data` rules.
- `dataaccess_log_model_idx (requested_model, started_at DESC)`: the model filter, when the
  model is rare or absent (otherwise the time index finds 50 rows first).
- `dataaccess_log_caller_name_idx (caller_type, caller_name, started_at DESC)`: the virtual
  account filter and `created_by: virtualaccount:...` rule filters.
- `dataaccess_log_caller_upper_idx (caller_type, UPPER(caller_name), started_at DESC)`
  (PostgreSQL): the user filter and `created_by: user:...` filters, which compare emails
  case-insensitively (`UPPER(caller_name::text) = UPPER(%s)`); SQLite's `LIKE` cannot use it.
- `dataaccess_log_error_idx (error_type, started_at DESC)` and
  `dataaccess_log_status_idx (status, started_at DESC)`: rare error types and status codes.
- Not indexed, on purpose: `team_ids LIKE '%|7|%'` (a trigram index would need pg_trgm, and
  teams are coarse: the time index finds a page of any team quickly) and metadata key/value
  (Django compares `metadata -> 'key'`, which a GIN index does not serve; a time range bounds
  the scan).

Rollups (`dataaccess_rollup`): `dataaccess_rollup_time (granularity, kind, bucket)` serves
every chart, total and leaderboard: one granularity and one kind over a time range (6-hour
rows then hour rows are two ranges of it, OR-ed into one bitmap scan). The unique constraint
`dataaccess_rollup_key` serves the log writer's upserts. Charts never touch raw logs.

MCP calls (`proxy_mcptoolcall`): `proxy_mcp_started_idx` and `proxy_mcp_server_idx` (proxy).

PostgreSQL builds these CONCURRENTLY (writes to the log continue during an upgrade), so this
migration is not atomic; each statement is IF NOT EXISTS and the migration can be re-run.
"""

from django.db import migrations

TABLE = "proxy_requestlog"
PORTABLE = {
    "dataaccess_log_model_idx": "(requested_model, started_at DESC)",
    "dataaccess_log_caller_name_idx": "(caller_type, caller_name, started_at DESC)",
    "dataaccess_log_error_idx": "(error_type, started_at DESC)",
    "dataaccess_log_status_idx": "(status, started_at DESC)",
}
POSTGRES_ONLY = {
    "dataaccess_log_caller_upper_idx": "(caller_type, UPPER(caller_name::text), started_at DESC)",
}


def create(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    indexes = {**PORTABLE, **(POSTGRES_ONLY if postgres else {})}
    how = "CONCURRENTLY IF NOT EXISTS" if postgres else "IF NOT EXISTS"
    for name, columns in indexes.items():
        schema_editor.execute(f"CREATE INDEX {how} {name} ON {TABLE} {columns}")


def drop(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    how = "CONCURRENTLY IF EXISTS" if postgres else "IF EXISTS"
    for name in {**PORTABLE, **POSTGRES_ONLY}:
        schema_editor.execute(f"DROP INDEX {how} {name}")


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("dataaccess", "0003_observability"), ("proxy", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
