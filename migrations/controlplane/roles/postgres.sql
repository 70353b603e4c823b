-- The runtime role of a PostgreSQL store that migrates as one user and
-- serves as another (adr/0030). It is not a goose migration: the migrating
-- user applies it after the migrations on every start, in a transaction
-- that holds an advisory lock, with envplane.runtime_user set to the
-- serving user's name. It is idempotent.
--
-- The role, <database>_app, may read and write the rows of every table the
-- migrations made and nothing else: it owns no table, so row-level security
-- holds it whatever FORCE says, and it cannot alter, drop or disable a
-- policy. goose's version table it may only read.
DO $roles$
DECLARE
    app     text := current_database() || '_app';
    runtime text := current_setting('envplane.runtime_user');
    tbl     text;
    r       pg_roles%ROWTYPE;
BEGIN
    IF octet_length(app) > 63 THEN
        RAISE EXCEPTION 'the database name % is too long to name its runtime role: at most 59 bytes', current_database()
            USING ERRCODE = 'name_too_long';
    END IF;
    SELECT * INTO r FROM pg_roles WHERE rolname = app;
    IF FOUND AND (r.rolsuper OR r.rolbypassrls OR r.rolcreaterole OR r.rolcreatedb OR r.rolcanlogin) THEN
        -- Its members could SET ROLE to it: it must hold rows, nothing more.
        RAISE EXCEPTION 'the role % exists with more than a runtime role may have (SUPERUSER, BYPASSRLS, CREATEROLE, CREATEDB or LOGIN)', app
            USING ERRCODE = 'insufficient_privilege',
                  HINT = format('as a superuser: ALTER ROLE %I NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOLOGIN', app);
    END IF;
    IF NOT FOUND THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE EXCEPTION 'the role % does not exist and the migrating user % may not create it', app, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('as a superuser, once: CREATE ROLE %I NOLOGIN; GRANT %I TO %I', app, app, runtime);
        END IF;
        EXECUTE format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', app);
    END IF;
    FOR tbl IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version' LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO %I', tbl, app);
    END LOOP;
    -- Read only: a replica that serves without migrating finds nothing
    -- pending and goes on.
    EXECUTE format('GRANT SELECT ON public.goose_db_version TO %I', app);
    IF runtime <> current_user AND NOT pg_has_role(runtime, app, 'MEMBER') THEN
        BEGIN
            EXECUTE format('GRANT %I TO %I', app, runtime);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'the migrating user % may not grant the role % to the store user %', current_user, app, runtime
                USING ERRCODE = 'insufficient_privilege',
                      HINT = format('as a superuser, once: GRANT %I TO %I', app, runtime);
        END;
    END IF;
END
$roles$;
