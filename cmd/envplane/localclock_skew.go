//go:build crashpoints

package main

import (
	"os"
	"time"
)

// localClock is, in binaries built with -tags crashpoints (the tests'
// only), the system's clock moved by ENVPLANE_TEST_CLOCK_SKEW (a Go
// duration, "30s" or "-30s"), so a test can run a replica whose clock is
// wrong (adr/0028). An unset or unreadable value moves nothing. time.Add
// keeps the monotonic reading, as a wrong wall clock would.
func localClock() func() time.Time {
	skew, _ := time.ParseDuration(os.Getenv("ENVPLANE_TEST_CLOCK_SKEW"))
	return func() time.Time { return time.Now().Add(skew).UTC() }
}
