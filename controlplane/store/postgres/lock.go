package postgres

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// lockConns is how many connections the store's named locks may hold at
// once. They have a pool of their own: a holder goes on to borrow from the
// main pool, so if locks borrowed from it too, enough holders would leave
// none for the work they wait on.
const lockConns = 8

// Lock takes the session-level advisory lock named key (hashed to 64
// bits: two names that collide only wait for each other) on a connection
// of its own, so every replica on the store waits for it, and returns its
// release. A replica that dies releases its locks with its connections.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	h := fnv.New64a()
	h.Write([]byte(key))
	id := int64(h.Sum64())
	conn, err := s.locks.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot lock %s: %w", key, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, id); err != nil {
		// A wait cut short by ctx closes the connection, and with it a
		// lock granted just then.
		conn.Release()
		return nil, fmt.Errorf("cannot lock %s: %w", key, err)
	}
	return func() {
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, id); err != nil {
			// The lock goes with the session: end it rather than hand it back.
			_ = conn.Conn().Close(context.Background())
		}
		conn.Release()
	}, nil
}

// newLockPool returns the pool of Lock's connections: the store's URL, at
// most lockConns connections, opened when first needed.
func newLockPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns, cfg.MinConns = lockConns, 0
	return pgxpool.NewWithConfig(ctx, cfg)
}
