package drivers_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/envplane/envplane/drivers"
)

func TestValidDatabaseName(t *testing.T) {
	ok := "env_" + strings.Repeat("a1", 13)
	for name, want := range map[string]bool{
		ok:                                     true,
		"env_" + strings.Repeat("z9", 13):      true,
		"env_" + strings.Repeat("a", 25):       false,
		"env_" + strings.Repeat("a", 27):       false,
		"env_" + strings.Repeat("A", 26):       false,
		"env-" + strings.Repeat("a", 26):       false,
		"env_" + strings.Repeat("a", 25) + "/": false,
		"env_../" + strings.Repeat("a", 23):    false,
		"":                                     false,
	} {
		if got := drivers.ValidDatabaseName(name); got != want {
			t.Errorf("ValidDatabaseName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := drivers.Secret("hunter2-very-secret")
	type holder struct{ S drivers.Secret }
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s), fmt.Sprintf("%+v %#v", holder{s}, holder{s})} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("a secret printed: %s", out)
		}
	}
	if b, _ := s.MarshalJSON(); strings.Contains(string(b), "hunter2") {
		t.Error("a secret marshalled to JSON")
	}
	if s.Reveal() != "hunter2-very-secret" {
		t.Error("Reveal does not return the value")
	}
}
