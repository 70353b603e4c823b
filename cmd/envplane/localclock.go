//go:build !crashpoints

package main

import "time"

// localClock is this replica's own clock: the system's, in UTC.
func localClock() func() time.Time {
	return func() time.Time { return time.Now().UTC() }
}
