package controlplane

import (
	"context"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxFilterValue bounds a free-text filter value (a target name, an
// environment slug or id): longer ones name nothing that exists.
const maxFilterValue = 100

// EnvironmentListFilter narrows ListEnvironments; zero fields do not filter.
type EnvironmentListFilter struct {
	Type   EnvironmentType
	Status EnvironmentStatus
	// Target is the name of the target the database lives on.
	Target string
}

// Validate returns EINVALID naming each field whose value is not one the
// API knows.
func (f EnvironmentListFilter) Validate() error {
	var fields []FieldError
	if f.Type != "" && !f.Type.Valid() {
		fields = append(fields, FieldError{Field: "type", Message: "must be one of " + joinValues(environmentTypes())})
	}
	if f.Status != "" && !f.Status.Valid() {
		fields = append(fields, FieldError{Field: "status", Message: "must be one of " + joinValues(environmentStatuses())})
	}
	if !filterText(f.Target) {
		fields = append(fields, FieldError{Field: "target", Message: "is not a target name"})
	}
	if fields != nil {
		return Invalid(fields...)
	}
	return nil
}

// OperationListFilter narrows ListOperations; zero fields do not filter.
type OperationListFilter struct {
	// Environment is a live environment's slug or id.
	Environment string
	Status      OperationStatus
	Kind        OperationKind
}

// Validate returns EINVALID naming each field whose value is not one the
// API knows.
func (f OperationListFilter) Validate() error {
	var fields []FieldError
	if !filterText(f.Environment) {
		fields = append(fields, FieldError{Field: "environment", Message: "is not an environment slug or id"})
	}
	if f.Status != "" && !f.Status.Valid() {
		fields = append(fields, FieldError{Field: "status", Message: "must be one of " + joinValues(operationStatuses())})
	}
	if f.Kind != "" && !f.Kind.Valid() {
		fields = append(fields, FieldError{Field: "kind", Message: "must be one of " + joinValues(OperationKinds())})
	}
	if fields != nil {
		return Invalid(fields...)
	}
	return nil
}

// filterText reports whether s can name something stored: short, UTF-8,
// without NUL (which some engines refuse with an error of their own).
func filterText(s string) bool {
	return len(s) <= maxFilterValue && utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

func environmentTypes() []EnvironmentType {
	return []EnvironmentType{TypeDefault, TypeDevelopment, TypeTest, TypeStaging, TypeProduction, TypeSandbox, TypePreview, TypeTrial}
}

func environmentStatuses() []EnvironmentStatus {
	return []EnvironmentStatus{StatusProvisioning, StatusActive, StatusSuspended, StatusDeleting, StatusDeleted, StatusFailed}
}

func operationStatuses() []OperationStatus {
	return []OperationStatus{OpPending, OpRunning, OpSucceeded, OpFailed}
}

// OperationKinds lists every kind of operation.
func OperationKinds() []OperationKind {
	return []OperationKind{OpProvision, OpDeprovision, OpRotate, OpClone, OpSuspend, OpResume, OpReset, OpMigrate, OpBackup, OpRestore}
}

// Valid reports whether s is a known environment status.
func (s EnvironmentStatus) Valid() bool { return slices.Contains(environmentStatuses(), s) }

// Valid reports whether s is a known operation status.
func (s OperationStatus) Valid() bool { return slices.Contains(operationStatuses(), s) }

// Valid reports whether k is a known operation kind.
func (k OperationKind) Valid() bool { return slices.Contains(OperationKinds(), k) }

func joinValues[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// visibleEnvironments returns the ids of the organization's environments
// that a's subject may see, or nil when it sees them all.
func (s *Service) visibleEnvironments(ctx context.Context, a *access) ([]string, error) {
	p := a.subject.Principal
	switch {
	case p.IsApp():
		return []string{p.EnvironmentID}, nil
	case SeesAllEnvironments(a.subject):
		return nil, nil
	}
	roles, err := s.Store.ListUserEnvironmentRoles(ctx, a.org.ID, p.UserID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(roles))
	for id := range roles {
		ids = append(ids, id)
	}
	return ids, nil
}
