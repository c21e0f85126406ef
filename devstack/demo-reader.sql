-- The read-only database user sluice logs in as for analysts (see the
-- demo target's credentials). It sees every table, present and future, and
-- changes none. Run as a superuser in sluice_demo, after demo.sql.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sluice_reader') THEN
    CREATE ROLE sluice_reader LOGIN PASSWORD 'reader-dev-password';
  END IF;
END $$;
GRANT CONNECT ON DATABASE sluice_demo TO sluice_reader;
GRANT USAGE ON SCHEMA public TO sluice_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO sluice_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE agent IN SCHEMA public GRANT SELECT ON TABLES TO sluice_reader;
