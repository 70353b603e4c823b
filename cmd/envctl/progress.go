package main

import (
	"context"
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	cp "github.com/envplane/envplane/controlplane"
)

// follow waits for a running operation, showing its progress on stderr: a
// spinner when stderr is a terminal, one line per change otherwise (CI logs).
// It returns the finished operation; one that failed is an error naming its
// step and cause.
func (a *app) follow(ctx context.Context, op *cp.Operation) (*cp.Operation, error) {
	p := newProgress(a.stderr)
	final, err := a.client.WaitOperation(ctx, op.ID, a.poll, p.update)
	p.finish()
	if err != nil {
		return nil, err
	}
	if final.Status == cp.OpFailed {
		return final, fmt.Errorf("operation %s (%s) failed at step %s: %s", final.ID, final.Kind, dash(final.Step), dash(final.Error))
	}
	return final, nil
}

// progress shows an operation's state as it changes.
type progress struct {
	w    io.Writer
	bar  *progressbar.ProgressBar // nil when w is not a terminal
	last string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSpinnerType(14),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

func (p *progress) update(op *cp.Operation) {
	text := fmt.Sprintf("%s %s: %s", op.Kind, op.ID, op.Status)
	if op.Step != "" {
		text += ", step " + op.Step
	}
	if op.Attempts > 1 {
		text += fmt.Sprintf(" (attempt %d)", op.Attempts)
	}
	if p.bar != nil {
		p.bar.Describe(text)
		return
	}
	if text != p.last {
		fmt.Fprintln(p.w, text)
		p.last = text
	}
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// isTerminal reports whether w is a terminal, so a spinner's control codes
// never reach a file or a pipe.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
