package controlplane_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

// FuzzValidSlug: ValidSlug agrees with the documented pattern on any input,
// so no slug that can reach a path, a database name or a store is outside it.
func FuzzValidSlug(f *testing.F) {
	pattern := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	for _, s := range []string{"", "a", "acme", "-x", "a-", "../x", "Ab", "dév", strings.Repeat("a", 63), strings.Repeat("a", 64), "a\x00", "a\n", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := cp.ValidSlug(s), pattern.MatchString(s); got != want {
			t.Fatalf("ValidSlug(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}

// FuzzCursor: Page.Check accepts exactly the empty cursor and an id's shape,
// every id NewID makes among them, refuses the rest as EMALFORMED naming
// cursor, and whatever it accepts is text every store can hold.
func FuzzCursor(f *testing.F) {
	shape := regexp.MustCompile(`^[a-z]{1,16}_[a-z0-9]{1,64}$`)
	for _, s := range []string{"", cp.NewID("org"), cp.NewID("evt"), "garbage", "' OR 1=1--", "org_", "_x", "org_\x00", "ORG_X", "a_b_c", "\xff_x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		err := cp.Page{Cursor: cursor}.Check()
		want := cursor == "" || shape.MatchString(cursor)
		if (err == nil) != want {
			t.Fatalf("Check(%q) = %v, the shape says valid=%v", cursor, err, want)
		}
		if err != nil {
			var e *cp.Error
			if !cp.IsCode(err, cp.EMALFORMED) || !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != "cursor" {
				t.Fatalf("Check(%q) = %#v, want EMALFORMED naming cursor", cursor, err)
			}
			return
		}
		if !cp.StorableText(cursor) {
			t.Fatalf("Check accepted %q, which a store cannot hold", cursor)
		}
	})
}

// FuzzStorableText: StorableText is exactly "valid UTF-8 without NUL".
func FuzzStorableText(f *testing.F) {
	for _, s := range []string{"", "acme", "a\x00b", "\xff", "\xed\xa0\x80", "caf\u00e9", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := strings.ToValidUTF8(s, "") == s && !strings.ContainsRune(s, 0)
		if got := cp.StorableText(s); got != want {
			t.Fatalf("StorableText(%q) = %v, want %v", s, got, want)
		}
	})
}
