package controlplane

import (
	"time"
)

// Usage is what a database held at its last measurement. Tables and
// Connections are nil where the engine does not tell.
type Usage struct {
	SizeBytes   int64     `json:"size_bytes"`
	Tables      *int64    `json:"tables,omitempty"`
	Connections *int64    `json:"connections,omitempty"`
	MeasuredAt  time.Time `json:"measured_at"`
}

// UsageTotal sums the last measurements of an organization's live
// environments of one type. Measured counts those measured at least once;
// Tables sums where the engine tells.
type UsageTotal struct {
	Type         EnvironmentType `json:"type"`
	Environments int             `json:"environments"`
	Measured     int             `json:"measured"`
	SizeBytes    int64           `json:"size_bytes"`
	Tables       int64           `json:"tables"`
	OverLimit    int             `json:"over_limit"`
}

// OrgUsageTotal sums the last measurements of one organization's live
// environments, for metrics.
type OrgUsageTotal struct {
	OrgSlug   string
	SizeBytes int64
	OverLimit int
}
