-- +goose Up
-- At most one unfinished operation per environment: two concurrent requests
-- (a rotation and a deletion, two revocations) must not both start work on
-- one database. The second insert fails as a conflict (409).
CREATE UNIQUE INDEX operations_one_running_per_environment
	ON operations (environment_id)
	WHERE status IN ('pending', 'running') AND environment_id IS NOT NULL;

-- +goose Down
DROP INDEX operations_one_running_per_environment;
