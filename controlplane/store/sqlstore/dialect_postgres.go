package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/envplane/envplane/controlplane"
)

// Postgres is the dialect of PostgreSQL through pgx's database/sql driver
// (github.com/jackc/pgx/v5/stdlib): READ COMMITTED transactions, row locks,
// and claims that pass over each other's rows with FOR UPDATE SKIP LOCKED,
// so replicas share background work.
func Postgres() Dialect { return postgresDialect{} }

type postgresDialect struct{}

// SQLSTATE codes the store translates into the domain's codes.
const (
	pgUniqueViolation     = "23505"
	pgForeignKeyViolation = "23503"
	pgCheckViolation      = "23514"
)

func (postgresDialect) classify(err error) violation {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgUniqueViolation:
			return uniqueViolation
		case pgForeignKeyViolation:
			return foreignKeyViolation
		case pgCheckViolation:
			return checkViolation
		}
	}
	return noViolation
}

// in passes the values as one text[] argument.
func (postgresDialect) in(a *args, values []string) string { return "= ANY(" + a.add(values) + ")" }

func (postgresDialect) forUpdate() string { return " FOR UPDATE" }

func (postgresDialect) skipLocked(of string) string {
	if of == "" {
		return " FOR UPDATE SKIP LOCKED"
	}
	return " FOR UPDATE OF " + of + " SKIP LOCKED"
}

func (postgresDialect) greatest() string { return "GREATEST" }

// routeCredentialJoin finds the credential on the (database_id, status)
// index among the few active ones.
func (postgresDialect) routeCredentialJoin() string {
	return `
	LEFT JOIN LATERAL (
		SELECT ` + credColumns + ` FROM database_credentials
		WHERE database_id = d.id AND status = 'active' AND scope = $2
		ORDER BY issued_at DESC, id DESC LIMIT 1) c ON true`
}

// appendChange takes the next value of the change counter. The counter's
// row stays locked until the caller's transaction ends (at once, outside
// WithTx), so appenders take turns and changes become visible in seq order:
// a reader that saw seq n never misses a smaller one committed later.
func (postgresDialect) appendChange() string {
	return `WITH next AS (UPDATE change_counter SET value = value + 1 RETURNING value)
		INSERT INTO changes (seq, org_id, reason, created_at) SELECT value, $1, $2, $3 FROM next RETURNING seq`
}

// recordReceipts passes arrays of the receipts' fields. Receipts of one row
// within rs are added up first, since one statement may not update a row
// twice.
func (postgresDialect) recordReceipts(ctx context.Context, q *queries, rs []*controlplane.Receipt) error {
	n := len(rs)
	ids, orgIDs, envIDs, keyIDs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	userIDs, scopes, credIDs := make([]*string, n), make([]string, n), make([]string, n)
	keyVersions, replicas := make([]string, n), make([]string, n)
	buckets, firsts, lasts, counts := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n), make([]int64, n)
	for i, r := range rs {
		ids[i], orgIDs[i], envIDs[i], keyIDs[i] = r.ID, r.OrgID, r.EnvironmentID, r.KeyID
		userIDs[i], scopes[i], credIDs[i] = nullString(r.UserID), string(r.Scope), r.CredentialID
		keyVersions[i], replicas[i] = r.KeyVersion, r.Replica
		buckets[i], firsts[i], lasts[i], counts[i] = r.FirstAt.Truncate(time.Minute), r.FirstAt, r.LastAt, r.Count
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO router_receipts (id, org_id, environment_id, key_id, user_id, scope,
			credential_id, key_version, replica, bucket, first_at, last_at, count)
		SELECT min(r.id), r.org_id, r.environment_id, r.key_id, min(r.user_id), r.scope, r.credential_id, r.key_version,
			r.replica, r.bucket, min(r.first_at), max(r.last_at), sum(r.count)
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::bigint[])
			AS r (id, org_id, environment_id, key_id, user_id, scope, credential_id, key_version, replica, bucket,
				first_at, last_at, count)
		GROUP BY r.org_id, r.environment_id, r.key_id, r.scope, r.credential_id, r.key_version, r.replica, r.bucket
		ON CONFLICT (environment_id, key_id, scope, credential_id, key_version, replica, bucket) DO UPDATE SET
			count = router_receipts.count + excluded.count,
			first_at = LEAST(router_receipts.first_at, excluded.first_at),
			last_at = GREATEST(router_receipts.last_at, excluded.last_at)`,
		ids, orgIDs, envIDs, keyIDs, userIDs, scopes, credIDs, keyVersions, replicas, buckets, firsts, lasts, counts)
	return err
}

// insertRolloutItems inserts every item in one statement over arrays of
// their fields.
func (postgresDialect) insertRolloutItems(ctx context.Context, q *queries, rolloutID string, items []*controlplane.RolloutItem) error {
	var envIDs, orgIDs, slugs, types, statuses []string
	var phases, positions []int
	var updated []time.Time
	for _, it := range items {
		envIDs, orgIDs, slugs = append(envIDs, it.EnvironmentID), append(orgIDs, it.OrgID), append(slugs, it.Environment)
		types, statuses = append(types, string(it.Type)), append(statuses, string(it.Status))
		phases, positions, updated = append(phases, it.Phase), append(positions, it.Position), append(updated, it.UpdatedAt)
	}
	_, err := q.db.ExecContext(ctx, `INSERT INTO rollout_items (rollout_id, environment_id, org_id, environment, type, phase, position, status, updated_at)
		SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::text[], $9::timestamptz[])`,
		rolloutID, envIDs, orgIDs, slugs, types, phases, positions, statuses, updated)
	return err
}

func (postgresDialect) cachesStatements() bool { return false }

func (postgresDialect) rowSecurity() bool { return true }

func (postgresDialect) oneWriter() bool { return false }
