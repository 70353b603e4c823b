package sqlstore

import (
	"context"

	"github.com/envplane/envplane/controlplane"
)

// Dialect is what the two engines do differently; the store's statements
// ask it for those parts and write everything else once. SQLite and
// PostgreSQL are its only implementations (dialect_sqlite.go,
// dialect_postgres.go).
type Dialect interface {
	// classify names the constraint a failed write violated.
	classify(err error) violation
	// in returns the right side of "x IN values" (with the IN), its one
	// argument added to a: one query text serves every length.
	in(a *args, values []string) string
	// forUpdate locks the rows a SELECT reads until the transaction ends:
	// " FOR UPDATE", or "" where the one writer holds the whole database.
	forUpdate() string
	// skipLocked ends a claim's candidate SELECT: it locks the rows of
	// table alias of ("" for the only table) and passes over the rows other
	// claimers hold, or "" where claimers are serialized anyway.
	skipLocked(of string) string
	// greatest names the function of the larger of two values (NULL if
	// either is, on SQLite: coalesce first).
	greatest() string
	// routeCredentialJoin joins to a route's database d, as c, its newest
	// active credential of the scope $2.
	routeCredentialJoin() string
	// appendChange is the statement that inserts a change of organization
	// $1, reason $2 and time $3 and returns its seq.
	appendChange() string
	// recordReceipts writes a batch of receipts, whose times are truncated,
	// in one statement (see RecordReceipts).
	recordReceipts(ctx context.Context, q *queries, rs []*controlplane.Receipt) error
	// insertRolloutItems inserts a new rollout's items, whose times are
	// truncated.
	insertRolloutItems(ctx context.Context, q *queries, rolloutID string, items []*controlplane.RolloutItem) error
	// cachesStatements says whether the store prepares each query text once
	// and keeps it (SQLite, which plans every statement it is given; pgx
	// caches prepared statements per connection itself).
	cachesStatements() bool
	// oneWriter says whether the engine has one write lock for the whole
	// database (SQLite), so the store queues its transactions itself
	// rather than leave them to the engine's busy handler (adr/0029).
	oneWriter() bool
	// rowSecurity says whether the engine enforces the store scope with
	// row-level security (PostgreSQL, adr/0027), so every transaction
	// sets it.
	rowSecurity() bool
}

// violation is the constraint a failed write violated.
type violation int

const (
	noViolation violation = iota
	uniqueViolation
	foreignKeyViolation
	checkViolation
)
