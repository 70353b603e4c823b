package postgres

import (
	"context"

	"github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/store/sqlstore"
)

// OpenPlatform opens the store so that a context without a scope has the
// platform scope, for the conformance suite and benchmarks, which test what
// the store keeps rather than who may see it (the row-level security tests
// in store/sqlstore do that).
func OpenPlatform(ctx context.Context, url string, opts ...Option) (*Store, error) {
	platform := func(o *options) {
		o.store = append(o.store, sqlstore.UnscopedAs(controlplane.StoreScope{Platform: true}))
	}
	return Open(ctx, url, append(opts, platform)...)
}
