package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	cp "github.com/envplane/envplane/controlplane"
)

// follow waits for a running operation, showing its progress on stderr: a
// spinner when stderr is a terminal, one line per change otherwise (CI logs).
// It returns the finished operation; one that failed is an error naming its
// step and cause, and one still running after --timeout is an error saying
// how to go on following it.
func (a *app) follow(ctx context.Context, op *cp.Operation) (*cp.Operation, error) {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	p := newProgress(a.stderr)
	if op.Status != "" {
		// What the request answered: where the operation stood, even if
		// the timeout ends the wait before the first read.
		p.seen = op
	}
	final, err := a.client.WaitOperation(ctx, op.ID, a.poll, p.update)
	p.finish()
	if errors.Is(err, context.DeadlineExceeded) {
		state := "running"
		if p.seen != nil {
			state = string(p.seen.Status)
			if p.seen.Step != "" {
				state += " at step " + p.seen.Step
			}
		}
		return nil, fmt.Errorf("operation %s is still %s after --timeout %s; it goes on without envctl: follow it with 'envctl op wait %s'",
			op.ID, state, a.timeout, op.ID)
	}
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
	seen *cp.Operation // the last state read
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
	p.seen = op
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

// isTerminal reports whether f (a reader or writer) is a terminal, so a
// spinner's control codes never reach a file or a pipe, and envctl asks
// questions only where someone can answer.
func isTerminal(f any) bool {
	fd, ok := f.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(fd.Fd()))
}

// confirm asks people to type name before a destructive change, unless yes.
// When stdin is not a terminal nobody is there to answer: it refuses at once
// (a usage error) rather than wait on a pipe.
func (a *app) confirm(yes bool, question, name string) error {
	if yes {
		return nil
	}
	if !isTerminal(a.stdin) {
		return usageError{fmt.Errorf("%s Not confirmed: stdin is not a terminal to ask on; pass --yes", question)}
	}
	return confirmTyped(a.stdin, a.stderr, question, name)
}

// confirmTyped writes the question to out and reads one line from in: the
// change is confirmed only when the line is name.
func confirmTyped(in io.Reader, out io.Writer, question, name string) error {
	fmt.Fprintf(out, "%s Type %s to confirm: ", question, name)
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("cannot read the confirmation: %w", err)
	}
	if strings.TrimSpace(line) != name {
		return errors.New("not confirmed: nothing was changed")
	}
	return nil
}
