package router_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/envplane/envplane/dataplane/router"
)

// BenchmarkPoolDB measures DB on the hot path: no refresh due, the real
// clock. It is what an application pays per query for never seeing a gap.
func BenchmarkPoolDB(b *testing.B) {
	s := newRouterServer(b)
	s.answerWith(b, sqliteConnection(filepath.Join(b.TempDir(), "env.db"), "cred_1", time.Now().Add(time.Hour)))
	// No watch: the double answers watches at once, and the count below
	// is of resolves.
	p := openPool(b, s, &opener{}, router.Options{Watch: router.WatchOff})
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.DB(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.DB(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	if n := len(s.seen()); n != 1 {
		b.Errorf("%d resolves on the hot path, want only Open's", n)
	}
}
