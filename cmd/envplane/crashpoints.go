//go:build crashpoints

package main

import (
	"log/slog"
	"os"
)

// crashHook returns, in binaries built with -tags crashpoints (the crash
// tests' only), a hook that kills this process with SIGKILL, as kill -9
// would, when the saga reaches the point named by ENVPLANE_CRASH_AT: no
// deferred function runs and nothing is flushed or released. It returns nil
// when the variable is unset.
func crashHook(logger *slog.Logger) func(point string) {
	at := os.Getenv("ENVPLANE_CRASH_AT")
	if at == "" {
		return nil
	}
	return func(point string) {
		if point != at {
			return
		}
		logger.Warn("crash point reached", "point", point)
		self, err := os.FindProcess(os.Getpid())
		if err == nil {
			err = self.Kill()
		}
		if err != nil {
			logger.Error("cannot kill this process at its crash point", "err", err)
			os.Exit(137)
		}
		// The signal is delivered asynchronously; the step must not go on.
		select {}
	}
}
