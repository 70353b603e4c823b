package storetest

import (
	"testing"
	"time"

	"github.com/envplane/envplane/controlplane"
)

func receiptID(r *controlplane.Receipt) string { return r.ID }

// newReceipt returns a receipt of one resolution of env's credential by key
// on replica r1 at first, not yet recorded.
func newReceipt(env *controlplane.Environment, key, cred string, first time.Time) *controlplane.Receipt {
	return &controlplane.Receipt{ID: newID("rcpt_"), OrgID: env.OrgID, EnvironmentID: env.ID, KeyID: key, UserID: "usr_" + key,
		Scope: "readwrite", CredentialID: cred, KeyVersion: "local:1", Replica: "r1", FirstAt: first, LastAt: first, Count: 1}
}

func testReceipts(t *testing.T, s controlplane.Store) {
	ctx := t.Context()
	a, b := newOrg(t, s, "a"), newOrg(t, s, "b")
	e1, e2, eB := newEnv(t, s, a, "one"), newEnv(t, s, a, "two"), newEnv(t, s, b, "one")
	// The start of a minute, with a zone other than UTC.
	minute := at(time.Hour).Truncate(time.Minute)
	list := func(f controlplane.ReceiptFilter) []*controlplane.Receipt {
		t.Helper()
		rs, next, err := s.ListReceipts(ctx, f, controlplane.Page{})
		must(t, err)
		if next != "" {
			t.Errorf("ListReceipts(%+v) has a next page", f)
		}
		return rs
	}

	must(t, s.RecordReceipts(ctx, nil))
	counted := newReceipt(e1, "k1", "cred_1", minute.Add(10*time.Second+123*time.Nanosecond))
	counted.LastAt, counted.Count = minute.Add(20*time.Second), 3
	app := newReceipt(e1, "k2", "cred_1", minute.Add(5*time.Second))
	app.UserID = ""
	other := newReceipt(eB, "k1", "cred_b", minute)
	must(t, s.RecordReceipts(ctx, []*controlplane.Receipt{counted, app, other}))
	if want := us(minute.Add(10 * time.Second)).UTC(); !counted.FirstAt.Equal(want) || counted.FirstAt.Location() != time.UTC {
		t.Errorf("RecordReceipts left FirstAt %v, want it truncated to microseconds in UTC: %v", counted.FirstAt, want)
	}
	same(t, "receipts of e1", []*controlplane.Receipt{app, counted}, list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e1.ID}))

	// The same row within the minute adds up, earlier and later; the next
	// minute, another replica, key version or credential is a row of its own.
	sameMinute := newReceipt(e1, "k1", "cred_1", minute.Add(2*time.Second))
	sameMinute.LastAt, sameMinute.Count = minute.Add(59*time.Second), 4
	nextMinute := newReceipt(e1, "k1", "cred_1", minute.Add(70*time.Second))
	nextMinute.LastAt, nextMinute.Count = minute.Add(80*time.Second), 2
	replica := newReceipt(e1, "k1", "cred_1", minute.Add(30*time.Second))
	replica.Replica = "r2"
	version := newReceipt(e1, "k1", "cred_1", minute.Add(30*time.Second))
	version.KeyVersion = "local:2"
	rotated := newReceipt(e1, "k1", "cred_2", minute.Add(40*time.Second))
	must(t, s.RecordReceipts(ctx, []*controlplane.Receipt{sameMinute, nextMinute, replica, version, rotated}))
	merged := *counted
	merged.FirstAt, merged.LastAt, merged.Count = sameMinute.FirstAt, sameMinute.LastAt, 7
	want := []*controlplane.Receipt{rotated, version, replica, nextMinute, app, &merged}
	same(t, "receipts of e1 after adding", want, list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e1.ID}))

	// Twice the same row in one batch adds up too.
	twice, again := newReceipt(e2, "k1", "cred_2", minute.Add(time.Second)), newReceipt(e2, "k1", "cred_2", minute.Add(3*time.Second))
	again.Count = 2
	must(t, s.RecordReceipts(ctx, []*controlplane.Receipt{twice, again}))
	rs := list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e2.ID})
	if len(rs) != 1 || rs[0].Count != 3 || !rs[0].FirstAt.Equal(twice.FirstAt) || !rs[0].LastAt.Equal(again.LastAt) {
		t.Errorf("one batch with a row twice stored %+v, want one row of count 3 from %v to %v", rs, twice.FirstAt, again.LastAt)
	}

	for _, tc := range []struct {
		name string
		f    controlplane.ReceiptFilter
		want []*controlplane.Receipt
	}{
		{"since the next minute", controlplane.ReceiptFilter{Since: minute.Add(time.Minute)}, []*controlplane.Receipt{nextMinute}},
		{"since a last resolution", controlplane.ReceiptFilter{Since: minute.Add(59 * time.Second)}, []*controlplane.Receipt{nextMinute, &merged}},
		{"until a first resolution", controlplane.ReceiptFilter{Until: minute.Add(5 * time.Second)}, []*controlplane.Receipt{app, &merged}},
		{"within the minute", controlplane.ReceiptFilter{Since: minute.Add(25 * time.Second), Until: minute.Add(35 * time.Second)},
			[]*controlplane.Receipt{version, replica, &merged}},
		{"of a credential", controlplane.ReceiptFilter{CredentialID: "cred_2"}, []*controlplane.Receipt{rotated}},
		{"of a credential since", controlplane.ReceiptFilter{CredentialID: "cred_1", Since: minute.Add(time.Minute)},
			[]*controlplane.Receipt{nextMinute}},
	} {
		f := tc.f
		f.OrgID, f.EnvironmentID = a.ID, e1.ID
		same(t, "receipts "+tc.name, tc.want, list(f))
	}

	same(t, "receipts of e1 in pages", ids(want, receiptID), collectPages(t, 4, func(p controlplane.Page) ([]*controlplane.Receipt, string, error) {
		return s.ListReceipts(ctx, controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e1.ID}, p)
	}, receiptID))

	// Another organization's environment holds nothing for a, and a's receipts
	// cannot be written to it; a failed batch writes nothing.
	if rs := list(controlplane.ReceiptFilter{OrgID: b.ID, EnvironmentID: e1.ID}); len(rs) != 0 {
		t.Errorf("b lists %d receipts of a's environment", len(rs))
	}
	if rs := list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: eB.ID}); len(rs) != 0 {
		t.Errorf("a lists %d receipts of b's environment", len(rs))
	}
	valid := newReceipt(e2, "k9", "cred_9", minute)
	misfiled := newReceipt(eB, "k2", "cred_b", minute)
	misfiled.OrgID = a.ID
	wantCode(t, s.RecordReceipts(ctx, []*controlplane.Receipt{valid, misfiled}), controlplane.ENOTFOUND)
	absent := newReceipt(e2, "k1", "cred_1", minute)
	absent.EnvironmentID = newID("env_")
	wantCode(t, s.RecordReceipts(ctx, []*controlplane.Receipt{absent}), controlplane.ENOTFOUND)
	odd := newReceipt(e2, "k1", "cred_1", minute)
	odd.Scope = "superuser"
	wantCode(t, s.RecordReceipts(ctx, []*controlplane.Receipt{odd}), controlplane.EINVALID)
	if rs := list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e2.ID, CredentialID: "cred_9"}); len(rs) != 0 {
		t.Errorf("a refused batch stored %d receipts", len(rs))
	}
	_, _, err := s.ListReceipts(ctx, controlplane.ReceiptFilter{OrgID: a.ID}, controlplane.Page{})
	wantCode(t, err, controlplane.EINVALID)
	_, _, err = s.ListReceipts(ctx, controlplane.ReceiptFilter{EnvironmentID: e1.ID}, controlplane.Page{})
	wantCode(t, err, controlplane.EINVALID)

	// Retention removes what was last used before the cut, wherever it is.
	n, err := s.DeleteReceiptsBefore(ctx, minute.Add(59*time.Second))
	must(t, err)
	if n != 6 {
		t.Errorf("DeleteReceiptsBefore removed %d receipts, want 6", n)
	}
	same(t, "receipts of e1 after retention", []*controlplane.Receipt{nextMinute, &merged},
		list(controlplane.ReceiptFilter{OrgID: a.ID, EnvironmentID: e1.ID}))
	// Deleting an organization deletes its receipts.
	must(t, s.DeleteOrganization(ctx, a.ID))
	n, err = s.DeleteReceiptsBefore(ctx, minute.Add(time.Hour))
	must(t, err)
	if n != 0 {
		t.Errorf("after both organizations' receipts were pruned or deleted, retention removed %d more", n)
	}
}
