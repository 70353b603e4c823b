package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// show prints v as indented JSON with -o json (the API's own field names),
// or as the table that table writes for people.
func (a *app) show(v any, table func(w *tabwriter.Writer)) error {
	if a.output == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("cannot write output: %w", err)
		}
		return nil
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	table(w)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("cannot write output: %w", err)
	}
	return nil
}

// row writes one tab-separated line.
func row(w *tabwriter.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// field writes one "name: value" line of an object's vertical table; empty
// values are skipped so optional fields do not clutter the view.
func field(w *tabwriter.Writer, name, value string) {
	if value != "" {
		fmt.Fprintf(w, "%s:\t%s\n", name, value)
	}
}

// when formats a time for tables; the zero time and nil are empty.
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// whenPtr is when for optional times.
func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}

// dash shows an empty cell as "-" so columns stay aligned and readable.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func itoa(n int) string { return strconv.Itoa(n) }
