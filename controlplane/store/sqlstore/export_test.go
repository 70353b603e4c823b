package sqlstore

import (
	"database/sql"

	"github.com/envplane/envplane/controlplane"
)

// Pool returns the Conn the store's own queries use.
func (s *Store) Pool() Conn { return s.queries.db }

// DB returns the store's database.
func (s *Store) DB() *sql.DB { return s.db }

// QueriesOn returns the store's queries on c, so a test can watch the
// statements they send.
func (s *Store) QueriesOn(c Conn) controlplane.Queries { return &queries{db: c, d: s.d} }

// ConnOf returns the Conn that q, the store's queries in a transaction,
// sends its statements on.
func ConnOf(q controlplane.Queries) Conn { return q.(*queries).db }
