-- The one row naming the environment and organization that own this database,
-- so a database can prove whose it is. The schema initializer inserts the row
-- after this migration and refuses to run for any other owner.
CREATE TABLE _envplane_meta (
	id             INTEGER PRIMARY KEY CHECK (id = 1),
	environment_id TEXT NOT NULL,
	org_id         TEXT NOT NULL,
	created_at     TEXT NOT NULL
);
