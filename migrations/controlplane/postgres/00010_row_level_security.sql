-- Row-level security (adr/0027): a second wall behind the organization
-- filters of every query. Each organization-owned table shows (and lets a
-- statement write) only the rows of the organization in the transaction
-- setting app.current_org_id, or every row when app.platform_scope is 'on'.
-- The store sets both at the start of every transaction and statement from
-- the scope authorization put in the context; a transaction that sets
-- neither sees no organization's rows. FORCE makes the policies hold the
-- tables' owner too, which is the store user: it must be neither superuser
-- nor BYPASSRLS (Open refuses it otherwise). The subqueries read the
-- settings once per statement, not once per row.
--
-- Tables without an organization keep no policy: users and what is theirs
-- alone (user_auth, recovery_codes, sessions), sign-in throttling,
-- idempotency records (owned by a key or session), change_counter and
-- goose's bookkeeping. Rows whose organization is NULL (platform keys,
-- platform rollouts, platform audit events, changes for everyone) are seen
-- only by the platform scope, with two exceptions: audit events and changes
-- are appended, never changed, and any scope may append one without an
-- organization (a user's own sign-in, a change for everyone); a change for
-- everyone (which names nothing but a reason) is also readable by all, as
-- appending it returns its sequence number. Only the platform prunes changes.
--
-- Roles are cluster-wide and creating them needs CREATEROLE, which the
-- store user must not have, so this migration creates none: the README
-- ("Least-privileged store user") shows the one-time setup.

-- +goose Up
-- Databases and credentials carry their organization, filled in on insert
-- from the environment (or database) they belong to, so that their policy
-- is a plain comparison the planner sees through: a policy that looked the
-- organization up per row made the background passes' plans read every
-- environment. The lookup is itself under row-level security, so a row
-- written for an organization out of scope gets no organization and is
-- refused by the policy. The column stays nullable so that a row naming a
-- missing environment or database fails on its foreign key (ENOTFOUND), as
-- before.
ALTER TABLE environment_databases ADD COLUMN org_id text COLLATE "C";
UPDATE environment_databases d SET org_id = e.org_id FROM environments e WHERE e.id = d.environment_id;
ALTER TABLE database_credentials ADD COLUMN org_id text COLLATE "C";
UPDATE database_credentials c SET org_id = d.org_id FROM environment_databases d WHERE d.id = c.database_id;

-- +goose StatementBegin
CREATE FUNCTION environment_databases_org() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.org_id := (SELECT e.org_id FROM environments e WHERE e.id = NEW.environment_id);
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER environment_databases_org BEFORE INSERT OR UPDATE OF environment_id ON environment_databases
    FOR EACH ROW EXECUTE FUNCTION environment_databases_org();

-- +goose StatementBegin
CREATE FUNCTION database_credentials_org() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.org_id := (SELECT d.org_id FROM environment_databases d WHERE d.id = NEW.database_id);
    RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER database_credentials_org BEFORE INSERT OR UPDATE OF database_id ON database_credentials
    FOR EACH ROW EXECUTE FUNCTION database_credentials_org();

ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON organizations
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE org_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_members FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON org_members
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE environments ENABLE ROW LEVEL SECURITY;
ALTER TABLE environments FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON environments
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON api_keys
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE environment_databases ENABLE ROW LEVEL SECURITY;
ALTER TABLE environment_databases FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON environment_databases
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE database_credentials ENABLE ROW LEVEL SECURITY;
ALTER TABLE database_credentials FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON database_credentials
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE environment_members ENABLE ROW LEVEL SECURITY;
ALTER TABLE environment_members FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON environment_members
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE operations ENABLE ROW LEVEL SECURITY;
ALTER TABLE operations FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON operations
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON audit_events FOR SELECT
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));
CREATE POLICY org_scope_append ON audit_events FOR INSERT
    WITH CHECK ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id IS NULL OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE changes FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON changes FOR SELECT
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id IS NULL OR org_id = (SELECT current_setting('app.current_org_id', true)));
CREATE POLICY org_scope_append ON changes FOR INSERT
    WITH CHECK ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id IS NULL OR org_id = (SELECT current_setting('app.current_org_id', true)));
CREATE POLICY platform_prune ON changes FOR DELETE
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on');

ALTER TABLE router_receipts ENABLE ROW LEVEL SECURITY;
ALTER TABLE router_receipts FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON router_receipts
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE backups ENABLE ROW LEVEL SECURITY;
ALTER TABLE backups FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON backups
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE rollouts ENABLE ROW LEVEL SECURITY;
ALTER TABLE rollouts FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON rollouts
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE rollout_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE rollout_items FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON rollout_items
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON invitations
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));

ALTER TABLE org_target_usage ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_target_usage FORCE ROW LEVEL SECURITY;
CREATE POLICY org_scope ON org_target_usage
    USING ((SELECT current_setting('app.platform_scope', true)) = 'on'
        OR org_id = (SELECT current_setting('app.current_org_id', true)));
-- Per-target totals are the platform's capacity: placing a database in any
-- organization's request counts every organization's databases per target.
-- Reading them is open to every scope; changing them is not.
CREATE POLICY capacity_read ON org_target_usage FOR SELECT USING (true);

-- +goose Down
DROP POLICY capacity_read ON org_target_usage;
DROP POLICY org_scope ON org_target_usage;
ALTER TABLE org_target_usage NO FORCE ROW LEVEL SECURITY;
ALTER TABLE org_target_usage DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON invitations;
ALTER TABLE invitations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE invitations DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON rollout_items;
ALTER TABLE rollout_items NO FORCE ROW LEVEL SECURITY;
ALTER TABLE rollout_items DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON rollouts;
ALTER TABLE rollouts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE rollouts DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON backups;
ALTER TABLE backups NO FORCE ROW LEVEL SECURITY;
ALTER TABLE backups DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON router_receipts;
ALTER TABLE router_receipts NO FORCE ROW LEVEL SECURITY;
ALTER TABLE router_receipts DISABLE ROW LEVEL SECURITY;

DROP POLICY platform_prune ON changes;
DROP POLICY org_scope_append ON changes;
DROP POLICY org_scope ON changes;
ALTER TABLE changes NO FORCE ROW LEVEL SECURITY;
ALTER TABLE changes DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope_append ON audit_events;
DROP POLICY org_scope ON audit_events;
ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_events DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON operations;
ALTER TABLE operations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE operations DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON environment_members;
ALTER TABLE environment_members NO FORCE ROW LEVEL SECURITY;
ALTER TABLE environment_members DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON database_credentials;
ALTER TABLE database_credentials NO FORCE ROW LEVEL SECURITY;
ALTER TABLE database_credentials DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON environment_databases;
ALTER TABLE environment_databases NO FORCE ROW LEVEL SECURITY;
ALTER TABLE environment_databases DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON api_keys;
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY;
ALTER TABLE api_keys DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON environments;
ALTER TABLE environments NO FORCE ROW LEVEL SECURITY;
ALTER TABLE environments DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON org_members;
ALTER TABLE org_members NO FORCE ROW LEVEL SECURITY;
ALTER TABLE org_members DISABLE ROW LEVEL SECURITY;

DROP POLICY org_scope ON organizations;
ALTER TABLE organizations NO FORCE ROW LEVEL SECURITY;
ALTER TABLE organizations DISABLE ROW LEVEL SECURITY;

DROP TRIGGER database_credentials_org ON database_credentials;
DROP FUNCTION database_credentials_org();
DROP TRIGGER environment_databases_org ON environment_databases;
DROP FUNCTION environment_databases_org();
ALTER TABLE database_credentials DROP COLUMN org_id;
ALTER TABLE environment_databases DROP COLUMN org_id;
