package controlplane_test

import (
	"strings"
	"testing"

	cp "github.com/envplane/envplane/controlplane"
)

func TestValidSlug(t *testing.T) {
	for slug, want := range map[string]bool{
		"a":                     true,
		"dev":                   true,
		"pr-42":                 true,
		"0":                     true,
		strings.Repeat("a", 63): true,
		strings.Repeat("a", 64): false,
		"":                      false,
		"-dev":                  false,
		"Dev":                   false,
		"../x":                  false,
		"dev_1":                 false,
		"dev.1":                 false,
		"dév":                   false,
		"dev ":                  false,
	} {
		if got := cp.ValidSlug(slug); got != want {
			t.Errorf("ValidSlug(%q) = %v, want %v", slug, got, want)
		}
	}
}
