package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	cp "github.com/envplane/envplane/controlplane"
	"github.com/envplane/envplane/controlplane/httpapi"
)

// rolloutCommand is `envctl rollout`: fleet migrations of the app's schema.
func (a *app) rolloutCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Roll the app's migrations across environments in waves (--org, or --platform for every organization)"}
	cmd.AddCommand(a.rolloutCreateCommand(), a.rolloutStatusCommand(), a.rolloutListCommand(),
		a.rolloutControlCommand(cp.RolloutPause, "Pause a rollout: migrations running finish, no more start"),
		a.rolloutControlCommand(cp.RolloutResume, "Resume a paused rollout"),
		a.rolloutControlCommand(cp.RolloutCancel, "Cancel a rollout: environments not started are skipped"))
	return cmd
}

// rolloutScope returns the organization a rollout command works on: --org,
// or "" with --platform (the platform admin's platform-wide rollouts).
func (a *app) rolloutScope(platform bool) (string, error) {
	if platform {
		if a.org != "" {
			return "", usageError{errors.New("--platform and --org exclude each other")}
		}
		return "", nil
	}
	return a.needOrg()
}

func (a *app) rolloutCreateCommand() *cobra.Command {
	var version int64
	var waves []string
	var parallelism, canary int
	var onError string
	var pause time.Duration
	var platform, watch bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Start a rollout of the app migrations up to --version (default: the newest)",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.rolloutScope(platform)
			if err != nil {
				return err
			}
			req := cp.CreateRolloutRequest{Canary: canary, OnError: onError}
			if cmd.Flags().Changed("version") {
				req.Version = &version
			}
			if cmd.Flags().Changed("parallelism") {
				req.Parallelism = &parallelism
			}
			for _, w := range waves {
				var wave []cp.EnvironmentType
				for _, t := range strings.Split(w, ",") {
					wave = append(wave, cp.EnvironmentType(strings.TrimSpace(t)))
				}
				req.Waves = append(req.Waves, wave)
			}
			if pause%time.Second != 0 || pause < 0 {
				return usageError{errors.New("--pause must be a whole number of seconds, such as 30s or 5m")}
			}
			req.PauseSeconds = int(pause / time.Second)
			v, err := a.client.CreateRollout(cmd.Context(), org, req)
			if err != nil {
				return err
			}
			if watch {
				return a.watchRollout(cmd.Context(), org, v)
			}
			return a.show(v, func(w *tabwriter.Writer) { rolloutTable(w, v) })
		},
	}
	f := cmd.Flags()
	f.Int64Var(&version, "version", 0, "the app migration version to reach (default: the newest configured)")
	f.StringArrayVar(&waves, "wave", nil, "one wave of environment types, comma-separated, in order; repeat for each wave (default: the server's, development → test → staging → production)")
	f.IntVar(&parallelism, "parallelism", 0, "how many environments migrate at once (default: the server's)")
	f.IntVar(&canary, "canary", 0, "how many of the first environments migrate alone first")
	f.StringVar(&onError, "on-error", "", "halt (default) or continue when an environment's migration fails")
	f.DurationVar(&pause, "pause", 0, "wait between waves, such as 5m")
	f.BoolVar(&platform, "platform", false, "every organization's environments (platform admin)")
	f.BoolVar(&watch, "watch", false, "follow the rollout to its end with a progress bar, up to --timeout")
	return cmd
}

func (a *app) rolloutStatusCommand() *cobra.Command {
	var platform, watch bool
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show a rollout and each environment's status; --watch follows it to its end",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.rolloutScope(platform)
			if err != nil {
				return err
			}
			v, err := a.client.GetRollout(cmd.Context(), org, argv[0])
			if err != nil {
				return err
			}
			if watch {
				return a.watchRollout(cmd.Context(), org, v)
			}
			return a.show(v, func(w *tabwriter.Writer) { rolloutTable(w, v) })
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "a platform-wide rollout (platform admin)")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the rollout to its end with a progress bar, up to --timeout")
	return cmd
}

func (a *app) rolloutListCommand() *cobra.Command {
	var page pageFlags
	var platform bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List rollouts, newest first",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			org, err := a.rolloutScope(platform)
			if err != nil {
				return err
			}
			rs, err := list(page, func(o httpapi.ListOptions) (*cp.List[*cp.Rollout], error) {
				return a.client.ListRollouts(cmd.Context(), org, o)
			})
			if err != nil {
				return err
			}
			defer a.more(rs.Next)
			return a.show(rs, func(w *tabwriter.Writer) {
				row(w, "ID", "VERSION", "STATUS", "PHASE", "ON ERROR", "CREATED", "FINISHED")
				for _, r := range rs.Items {
					row(w, r.ID, fmt.Sprint(r.Version), string(r.Status), itoa(r.Phase), r.OnError, when(r.CreatedAt), whenPtr(r.FinishedAt))
				}
			})
		},
	}
	page.add(cmd)
	cmd.Flags().BoolVar(&platform, "platform", false, "platform-wide rollouts (platform admin)")
	return cmd
}

func (a *app) rolloutControlCommand(control, short string) *cobra.Command {
	var platform bool
	cmd := &cobra.Command{
		Use:   control + " ID",
		Short: short,
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			org, err := a.rolloutScope(platform)
			if err != nil {
				return err
			}
			v, err := a.client.ControlRollout(cmd.Context(), org, argv[0], control)
			if err != nil {
				return err
			}
			return a.show(v, func(w *tabwriter.Writer) { rolloutTable(w, v) })
		},
	}
	cmd.Flags().BoolVar(&platform, "platform", false, "a platform-wide rollout (platform admin)")
	return cmd
}

// watchRollout polls the rollout every --poll-interval, drawing its
// progress on stderr, until it finishes or is paused (or --timeout ends
// the wait), then shows it. A rollout that ended failed or cancelled is
// an error, so scripts can stop on it.
func (a *app) watchRollout(ctx context.Context, org string, v *cp.RolloutView) error {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	bar := newRolloutBar(a.stderr, isTerminal(a.stderr))
	for {
		bar.draw(v)
		if v.Rollout.FinishedAt != nil || v.Rollout.Status == cp.RolloutPaused {
			break
		}
		select {
		case <-ctx.Done():
			bar.done()
			return fmt.Errorf("rollout %s is still %s after --timeout %s; it goes on without envctl: follow it with 'envctl rollout status %s --watch'",
				v.Rollout.ID, v.Rollout.Status, a.timeout, v.Rollout.ID)
		case <-time.After(a.poll):
		}
		next, err := a.client.GetRollout(ctx, org, v.Rollout.ID)
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			bar.done()
			return err
		}
		v = next
	}
	bar.done()
	if err := a.show(v, func(w *tabwriter.Writer) { rolloutTable(w, v) }); err != nil {
		return err
	}
	switch v.Rollout.Status {
	case cp.RolloutFailed, cp.RolloutCancelled:
		return fmt.Errorf("rollout %s %s: %s", v.Rollout.ID, v.Rollout.Status, dash(v.Rollout.Error))
	}
	return nil
}

// rolloutBar draws a rollout's progress: on a terminal one line redrawn in
// place, elsewhere (CI logs) a line whenever it changes.
type rolloutBar struct {
	w        io.Writer
	terminal bool
	last     string
}

func newRolloutBar(w io.Writer, terminal bool) *rolloutBar {
	return &rolloutBar{w: w, terminal: terminal}
}

func (b *rolloutBar) draw(v *cp.RolloutView) {
	line := progressLine(v, 30)
	if line == b.last {
		return
	}
	b.last = line
	if b.terminal {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(b.w, line)
}

func (b *rolloutBar) done() {
	if b.terminal && b.last != "" {
		fmt.Fprintln(b.w)
	}
}

// progressLine is one line of a rollout's progress: a bar width wide of
// the environments finished, the count, and the counts by outcome.
func progressLine(v *cp.RolloutView, width int) string {
	c := v.Counts
	finished := c.Succeeded + c.Failed + c.Skipped
	filled := width
	if c.Total > 0 {
		filled = finished * width / c.Total
	}
	return fmt.Sprintf("[%s%s] %d/%d %s, phase %d: %d succeeded, %d failed, %d skipped, %d running",
		strings.Repeat("#", filled), strings.Repeat("-", width-filled), finished, c.Total, v.Rollout.Status,
		v.Rollout.Phase, c.Succeeded, c.Failed, c.Skipped, c.Running)
}

func rolloutTable(w *tabwriter.Writer, v *cp.RolloutView) {
	r := v.Rollout
	field(w, "id", r.ID)
	field(w, "version", fmt.Sprint(r.Version))
	field(w, "status", string(r.Status))
	if r.Error != "" {
		field(w, "error", r.Error)
	}
	field(w, "phase", itoa(r.Phase))
	field(w, "parallelism", itoa(r.Parallelism))
	field(w, "canary", itoa(r.Canary))
	field(w, "on error", r.OnError)
	field(w, "progress", progressLine(v, 20))
	row(w)
	row(w, "ENVIRONMENT", "TYPE", "PHASE", "STATUS", "VERSION", "REASON")
	for _, it := range v.Environments {
		version := "-"
		if it.SchemaVersion > 0 {
			version = fmt.Sprint(it.SchemaVersion)
		}
		row(w, it.Environment, string(it.Type), itoa(it.Phase), string(it.Status), version, dash(it.Reason))
	}
}
