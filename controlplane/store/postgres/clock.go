package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/envplane/envplane/controlplane"
)

var _ controlplane.ClockReader = (*Store)(nil)

// Clock returns the server's clock_timestamp(): the one clock every
// replica measures leases on (adr/0028). It fails when the server cannot
// be reached.
func (s *Store) Clock(ctx context.Context) (time.Time, error) {
	var t time.Time
	if err := s.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("cannot read the store's clock: %w", err)
	}
	return t.UTC(), nil
}
