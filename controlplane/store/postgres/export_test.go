package postgres

import (
	"context"

	"github.com/envplane/envplane/controlplane"
)

// OpenPlatform opens the store so that a context without a scope has the
// platform scope, for the conformance suite and benchmarks, which test what
// the store keeps rather than who may see it (the RLS tests do that).
func OpenPlatform(ctx context.Context, url string) (*Store, error) {
	s, err := Open(ctx, url)
	if err != nil {
		return nil, err
	}
	s.scoped.unscoped = controlplane.StoreScope{Platform: true}
	s.queries.db = s.scoped
	return s, nil
}
