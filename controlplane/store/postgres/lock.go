package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// lockConns is how many connections the store's named locks may hold at
// once, each for a holder or a waiter. They have a pool of their own: a
// holder goes on to borrow from the main pool, so if locks borrowed from it
// too, enough holders would leave none for the work they wait on. A holder
// keeps its connection through a call to a target (bounded by the step's
// timeout), so the pool is wide enough that slow calls to one target leave
// room for the others.
const lockConns = 32

// unlockTimeout bounds the release: a store that does not answer loses the
// connection, and the lock with it, rather than the caller's time.
const unlockTimeout = 5 * time.Second

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
		ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, id); err != nil {
			// The lock goes with the session: end it rather than hand it back.
			_ = conn.Conn().Close(ctx)
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
