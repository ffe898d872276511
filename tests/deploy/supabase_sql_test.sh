#!/usr/bin/env bash
# deploy/supabase/local-llm-models.sql in a real PostgreSQL (Debian's): a throwaway cluster in a
# scratch directory, listening on a unix socket there only (no TCP port), run as an unprivileged
# user (postgres refuses root), stopped by its PID. The storage schema is Supabase's
# (supabase_storage_schema.sql); the checks are made as the roles Supabase's APIs switch to:
# anon reads the bucket and cannot write it, service_role writes, other buckets stay closed,
# and the SQL runs twice without error.
#
# Usage: supabase_sql_test.sh SOURCE_DIR   (ctest -L deploy runs it)
set -euo pipefail
SOURCE_DIR=${1:?usage: $0 SOURCE_DIR}
DEPLOY_SQL=$SOURCE_DIR/deploy/supabase/local-llm-models.sql

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "--- $*"; }

PGBIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[[ -n $PGBIN && -x $PGBIN/postgres ]] ||
  fail "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres); run tools/install-deps.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/modeldist-pg.XXXXXX")
PG_PID=""
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  # setpriv execs the command itself, so $! below is the postmaster's PID.
  as_pg=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
  chown nobody:nogroup "$WORK"
fi

cleanup() {
  local rc=$?
  if [[ -n $PG_PID ]]; then
    kill -INT "$PG_PID" 2>/dev/null || true # fast shutdown
    for _ in $(seq 100); do
      kill -0 "$PG_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$PG_PID" 2>/dev/null || true
    wait "$PG_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -f $WORK/postgres.log ]]; then
    echo "--- postgres log (end):" >&2
    tail -n 20 "$WORK/postgres.log" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

step "a throwaway cluster ($PGBIN)"
"${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/data" -U postgres -A trust -E UTF8 --locale=C \
  --no-sync >"$WORK/initdb.log" 2>&1 || { cat "$WORK/initdb.log" >&2; fail "initdb failed"; }
"${as_pg[@]}" "$PGBIN/postgres" -D "$WORK/data" -k "$WORK" -c listen_addresses= -c fsync=off \
  >"$WORK/postgres.log" 2>&1 &
PG_PID=$!
for _ in $(seq 300); do
  "$PGBIN/pg_isready" -q -h "$WORK" && break
  kill -0 "$PG_PID" 2>/dev/null || fail "postgres exited before accepting connections"
  sleep 0.1
done
"$PGBIN/pg_isready" -q -h "$WORK" || fail "postgres did not accept connections within 30 s"

# psql as the superuser (the SQL editor's `postgres`), stopping at the first error.
psql_su() { "$PGBIN/psql" -h "$WORK" -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
# as ROLE SQL: runs SQL as ROLE (as PostgREST does: SET ROLE), prints tuples only and the
# command tag of the last statement. Its exit status is psql's.
as() {
  local role=$1 sql=$2
  "$PGBIN/psql" -h "$WORK" -U postgres -d postgres -X -v ON_ERROR_STOP=1 -At \
    -c "set role $role" -c "$sql" 2>&1
}
# refused ROLE SQL: SQL must fail with a row-level security violation.
refused() {
  local out
  if out=$(as "$1" "$2"); then fail "$1 could: $2 ($out)"; fi
  [[ $out == *"violates row-level security policy"* ]] || fail "$1: $2 failed otherwise: $out"
}
# changes_nothing ROLE SQL: an UPDATE/DELETE that RLS filters to no rows.
changes_nothing() {
  local out
  out=$(as "$1" "$2") || fail "$1: $2: $out"
  [[ $out == "SET"$'\n'"UPDATE 0" || $out == "SET"$'\n'"DELETE 0" ]] ||
    fail "$1 changed rows: $2 ($out)"
}

psql_su -f "$SOURCE_DIR/tests/deploy/supabase_storage_schema.sql"

step "the deploy SQL runs"
psql_su -f "$DEPLOY_SQL"
[[ $(psql_su -At -c "select public from storage.buckets where id = 'local-llm-models'") == t ]] ||
  fail "the local-llm-models bucket is not public"

# A private bucket with an object, to show the policies stay on their bucket.
psql_su -c "insert into storage.buckets (id, name) values ('private', 'private')" \
  -c "insert into storage.objects (bucket_id, name) values ('private', 'secret.bin')"

step "service_role uploads (INSERT), replaces (UPDATE)"
out=$(as service_role "insert into storage.objects (bucket_id, name, metadata) values
  ('local-llm-models', 'llama-3.1-8b-instruct.gguf', '{\"size\": 1}')") || fail "$out"
[[ $out == *"INSERT 0 1" ]] || fail "service_role insert: $out"
out=$(as service_role "update storage.objects set metadata = '{\"size\": 2}'
  where bucket_id = 'local-llm-models'") || fail "$out"
[[ $out == *"UPDATE 1" ]] || fail "service_role update: $out"

step "anon and authenticated read the bucket, not other buckets"
for role in anon authenticated; do
  out=$(as "$role" "select name || ' ' || (metadata->>'size') from storage.objects
    where bucket_id = 'local-llm-models'") || fail "$out"
  [[ $out == "SET"$'\n'"llama-3.1-8b-instruct.gguf 2" ]] || fail "$role reads: $out"
  out=$(as "$role" "select count(*) from storage.objects where bucket_id <> 'local-llm-models'")
  [[ $out == "SET"$'\n'"0" ]] || fail "$role sees other buckets' objects: $out"
done

check_no_writes() {
  local role
  for role in anon authenticated; do
    refused "$role" "insert into storage.objects (bucket_id, name)
      values ('local-llm-models', 'evil-$role.gguf')"
    changes_nothing "$role" "update storage.objects set name = 'evil.gguf'
      where bucket_id = 'local-llm-models'"
    changes_nothing "$role" "delete from storage.objects where bucket_id = 'local-llm-models'"
  done
  # Moving another bucket's object into this one is a write here too.
  local out
  out=$(psql_su -At -c "select string_agg(name || ':' || (metadata->>'size'), ',')
    from storage.objects where bucket_id = 'local-llm-models'")
  [[ $out == "llama-3.1-8b-instruct.gguf:2" ]] || fail "the bucket changed: $out"
}
step "anon and authenticated cannot insert, update or delete"
check_no_writes

step "not even when another policy lets anyone upload anywhere"
psql_su -c "create policy \"anyone uploads\" on storage.objects for insert
    to anon, authenticated with check (true)" \
  -c "create policy \"anyone edits\" on storage.objects for update
    to anon, authenticated using (true) with check (true)" \
  -c "create policy \"anyone sees\" on storage.objects for select to anon using (true)"
check_no_writes
refused anon "update storage.objects set bucket_id = 'local-llm-models' where name = 'secret.bin'"
# ...while that policy still works for the other bucket: the restrictive ones are scoped.
out=$(as anon "insert into storage.objects (bucket_id, name) values ('private', 'ok.bin')") ||
  fail "anon could not insert into another bucket under a permissive policy: $out"

step "running the SQL again changes nothing and does not fail"
before=$(psql_su -At -c "select string_agg(policyname || '|' || permissive || '|' || cmd || '|'
  || roles::text || '|' || coalesce(qual, '') || '|' || coalesce(with_check, ''), E'\n'
  order by policyname) from pg_policies where policyname like 'local-llm-models:%'")
[[ $(wc -l <<<"$before") -eq 5 ]] || fail "want 5 local-llm-models policies, have: $before"
psql_su -f "$DEPLOY_SQL"
psql_su -f "$DEPLOY_SQL"
after=$(psql_su -At -c "select string_agg(policyname || '|' || permissive || '|' || cmd || '|'
  || roles::text || '|' || coalesce(qual, '') || '|' || coalesce(with_check, ''), E'\n'
  order by policyname) from pg_policies where policyname like 'local-llm-models:%'")
[[ $before == "$after" ]] || fail "policies differ after a second run: $before / $after"
[[ $(psql_su -At -c "select count(*) from storage.buckets where id = 'local-llm-models'") == 1 ]] ||
  fail "the bucket is not there exactly once"
check_no_writes

step "service_role deletes"
out=$(as service_role "delete from storage.objects where bucket_id = 'local-llm-models'") ||
  fail "$out"
[[ $out == *"DELETE 1" ]] || fail "service_role delete: $out"
echo "PASS"
