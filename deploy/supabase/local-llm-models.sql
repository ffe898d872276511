-- The seed's `local-llm-models` Supabase Storage bucket, for a project that keeps Supabase
-- Storage as an origin modeldist replicates to (docs/deploy/supabase.md, docs/origins.md).
--
-- Public read: anyone with the URL reads an object (the bytes prove themselves: every device
-- checks them against the SHA-256 and chunk chain of a signed manifest). Writes: only the
-- service role (the key modeldist-server's origins file names) uploads, replaces or deletes.
--
-- Run it in the SQL editor, or as a migration (`supabase migration new local_llm_models`, paste,
-- `supabase db push`). Safe to run again: it converges to the same bucket and policies.
-- Tested against PostgreSQL 15 with storage.buckets/storage.objects as Supabase's storage-api
-- defines them (tests/deploy/supabase_sql_test.sh).

begin;

-- The bucket. `public` makes /storage/v1/object/public/local-llm-models/<name> serve without a
-- token. No size or MIME limit here: models are several GB (the project's global upload limit
-- still applies; raise it in the dashboard's Storage settings).
insert into storage.buckets (id, name, public)
values ('local-llm-models', 'local-llm-models', true)
on conflict (id) do update set public = true;

-- Policies on storage.objects (RLS is on for it in every Supabase project). Dropped first so that
-- a second run replaces them instead of failing on the existing names.
drop policy if exists "local-llm-models: public read" on storage.objects;
drop policy if exists "local-llm-models: service role writes" on storage.objects;
drop policy if exists "local-llm-models: no insert by others" on storage.objects;
drop policy if exists "local-llm-models: no update by others" on storage.objects;
drop policy if exists "local-llm-models: no delete by others" on storage.objects;

-- Anyone (signed in or not) may read and list the bucket's objects.
create policy "local-llm-models: public read" on storage.objects
  for select to anon, authenticated
  using (bucket_id = 'local-llm-models');

-- The service role writes. (Supabase's service_role has BYPASSRLS, so this states the intent
-- and keeps uploads working for a service role without it.)
create policy "local-llm-models: service role writes" on storage.objects
  for all to service_role
  using (bucket_id = 'local-llm-models')
  with check (bucket_id = 'local-llm-models');

-- Nobody else writes here, even when another policy of the project lets users upload to any
-- bucket: restrictive policies are ANDed with every permissive one.
create policy "local-llm-models: no insert by others" on storage.objects
  as restrictive for insert to anon, authenticated
  with check (bucket_id <> 'local-llm-models');
create policy "local-llm-models: no update by others" on storage.objects
  as restrictive for update to anon, authenticated
  using (bucket_id <> 'local-llm-models')
  with check (bucket_id <> 'local-llm-models');
create policy "local-llm-models: no delete by others" on storage.objects
  as restrictive for delete to anon, authenticated
  using (bucket_id <> 'local-llm-models');

commit;
