-- What a Supabase project holds before deploy/supabase/local-llm-models.sql runs: the API roles
-- and the storage schema's two tables, as Supabase's storage-api migrations (repository
-- supabase/storage, migrations/tenant/: 0002 storage-schema and pathtoken-column, 0007 public,
-- 0012/0014 limits, 0017 owner type) leave them. A subset of the columns, written here; only
-- what the policies and the test touch has to be exact: the roles' attributes, bucket_id, name,
-- buckets.public, the owner and the grants, and row-level security on.

-- The roles PostgREST and storage-api switch to. NOINHERIT and NOLOGIN as Supabase creates
-- them; service_role bypasses RLS.
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role supabase_storage_admin nologin noinherit createrole;

create schema storage authorization supabase_storage_admin;
grant usage on schema storage to postgres, anon, authenticated, service_role;

create table storage.buckets (
  id text not null primary key,
  name text not null,
  owner uuid,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  public boolean default false,
  file_size_limit bigint,
  allowed_mime_types text[]
);
create unique index bname on storage.buckets using btree (name);

create table storage.objects (
  id uuid not null default gen_random_uuid() primary key,
  bucket_id text references storage.buckets (id),
  name text,
  owner text,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  last_accessed_at timestamptz default now(),
  metadata jsonb,
  path_tokens text[] generated always as (string_to_array(name, '/')) stored
);
create unique index bucketid_objname on storage.objects using btree (bucket_id, name);

alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
-- Supabase grants every API role all privileges on the tables: row-level security is the only
-- gate, which is what the test checks.
grant all on storage.buckets, storage.objects to anon, authenticated, service_role, postgres;
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
