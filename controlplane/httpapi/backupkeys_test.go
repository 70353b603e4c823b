package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	cp "github.com/envplane/envplane/controlplane"
)

// TestKeyRotationCoversBackups: a completed backup's data key is a sealed
// secret like a credential's (adr/0031). After a key rotation the coverage
// counts both backups under the old version (one made before rows kept the
// key, whose key comes from its stream's header), retiring it is refused
// (naming them) until a rewrap moves them, the rewrap leaves the stored
// streams byte for byte as they were, and after the retirement both
// backups still restore: on both stores, and with the Vault keyring.
func TestKeyRotationCoversBackups(t *testing.T) {
	for _, tc := range keyringCases() {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts(t)...)
			h.org(t, "acme")
			e := envSQL{h: h, org: "acme", sqlDriver: "sqlite"}
			h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "prod", "type": "staging"})
			e.exec(t, "prod", "admin", "CREATE TABLE notes (body TEXT)")
			e.exec(t, "prod", "readwrite", "INSERT INTO notes VALUES ('one'), ('two')")
			backups := []*cp.Backup{h.backup(t, "acme", "prod"), h.backup(t, "acme", "prod")}

			// The second as a backup made before rows kept the data key.
			ctx := cp.WithOrgScope(context.Background(), backups[1].OrgID)
			old, err := h.svc.Store.GetBackup(ctx, backups[1].OrgID, backups[1].ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(old.DEKCipher) == 0 || old.KeyID != backups[1].KeyID {
				t.Fatalf("the backup's row does not keep its wrapped data key")
			}
			old.DEKCipher = nil
			if err := h.svc.Store.UpdateBackup(ctx, old); err != nil {
				t.Fatal(err)
			}
			var streams [][]byte
			for _, b := range backups {
				stream, err := os.ReadFile(h.backupFile(b.ID))
				if err != nil {
					t.Fatal(err)
				}
				streams = append(streams, stream)
			}

			before := h.keyCoverage(t, "GET", "/v1/keyring", nil)
			if !before.Complete() || before.Backups.Total != 2 || before.Backups.Current != 2 {
				t.Fatalf("coverage before rotating: %+v", before)
			}
			rotated := h.keyCoverage(t, "POST", "/v1/keyring/rotate", nil)
			if rotated.Backups.Current != 0 || rotated.Backups.ByKey[before.CurrentKeyID] != 2 {
				t.Fatalf("coverage after rotating: %+v", rotated)
			}
			r := h.do(t, h.admin, "POST", "/v1/keyring/retire", map[string]any{"below": 2})
			wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
			if p := r.problem(t); !strings.Contains(p.Detail, "2 backups") {
				t.Fatalf("the refusal does not name the backups: %q", p.Detail)
			}
			rewrapped := h.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
			if !rewrapped.Complete() || rewrapped.Backups.Current != 2 || rewrapped.Backups.ByKey[rotated.CurrentKeyID] != 2 {
				t.Fatalf("coverage after rewrapping: %+v", rewrapped)
			}
			for i, b := range backups {
				stream, err := os.ReadFile(h.backupFile(b.ID))
				if err != nil || !bytes.Equal(stream, streams[i]) {
					t.Fatalf("the rewrap changed the stored backup %s (%v)", b.ID, err)
				}
			}
			h.keyCoverage(t, "POST", "/v1/keyring/retire", map[string]any{"below": 2})

			for i, b := range backups {
				into := []string{"restored-new", "restored-old"}[i]
				v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments/prod/restore",
					map[string]any{"backup_id": b.ID, "into": into}, "Prefer", "wait=120").environment(t)
				if v.Status != cp.StatusActive {
					t.Fatalf("restore of %s after the retirement: %s: %s", b.ID, v.Status, v.Error)
				}
				if n := e.count(t, into); n != 2 {
					t.Fatalf("%s holds %d notes, want the backup's 2", into, n)
				}
			}
		})
	}
}

// heldBackups holds every Put until released, as a long copy would.
type heldBackups struct {
	cp.BackupStore
	entered chan struct{}
	release chan struct{}
}

func (hb *heldBackups) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	close(hb.entered)
	<-hb.release
	return hb.BackupStore.Put(ctx, key, r)
}

// TestKeyRotationDuringABackup: a backup whose data key was wrapped before
// a rotation and its rewrap keeps retirement waiting while it runs (409,
// saying so), and completes under the current version, so the retirement
// that follows leaves it restorable.
func TestKeyRotationDuringABackup(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	e := envSQL{h: h, org: "acme", sqlDriver: "sqlite"}
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "prod", "type": "staging"})
	e.exec(t, "prod", "admin", "CREATE TABLE notes (body TEXT)")
	e.exec(t, "prod", "readwrite", "INSERT INTO notes VALUES ('one'), ('two')")
	held := &heldBackups{BackupStore: h.svc.Backups, entered: make(chan struct{}), release: make(chan struct{})}
	h.svc.Backups = held
	done := make(chan *cp.Backup, 1)
	go func() {
		var resp cp.BackupResponse
		r := h.do(t, h.admin, "POST", "/v1/organizations/acme/environments/prod/backups", nil, "Prefer", "wait=120")
		if r.status != http.StatusCreated {
			done <- nil
			return
		}
		if err := json.Unmarshal(r.body, &resp); err != nil {
			done <- nil
			return
		}
		done <- resp.Backup
	}()
	select {
	case <-held.entered:
	case <-time.After(time.Minute):
		t.Fatal("the backup did not reach the backup store")
	}

	rotated := h.keyCoverage(t, "POST", "/v1/keyring/rotate", nil)
	h.keyCoverage(t, "POST", "/v1/keyring/rewrap", nil)
	r := h.do(t, h.admin, "POST", "/v1/keyring/retire", map[string]any{"below": 2})
	wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
	if p := r.problem(t); !strings.Contains(p.Detail, "1 backups are running") {
		t.Fatalf("the refusal does not name the running backup: %q", p.Detail)
	}
	close(held.release)
	b := <-done
	if b == nil || b.Status != cp.BackupCompleted {
		t.Fatalf("the backup did not complete: %+v", b)
	}
	if b.KeyID != rotated.CurrentKeyID {
		t.Fatalf("the backup completed under %s, want the current %s", b.KeyID, rotated.CurrentKeyID)
	}
	h.keyCoverage(t, "POST", "/v1/keyring/retire", map[string]any{"below": 2})
	v := h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments/prod/restore",
		map[string]any{"backup_id": b.ID, "into": "restored"}, "Prefer", "wait=120").environment(t)
	if v.Status != cp.StatusActive || e.count(t, "restored") != 2 {
		t.Fatalf("restore after the retirement: %s: %s", v.Status, v.Error)
	}
}

// TestRewrapNamesWhatNoKeyOpens: a sealed secret under a version retired
// behind envplane's back stops every rewrap; the rewrap says which (409),
// rather than blaming the keyring (503) without end.
func TestRewrapNamesWhatNoKeyOpens(t *testing.T) {
	h := newHarness(t)
	h.org(t, "acme")
	h.must(t, http.StatusCreated, h.admin, "POST", "/v1/organizations/acme/environments", map[string]any{"slug": "prod", "type": "staging"})
	h.retireFirstKeyBehindOurBack(t)
	r := h.do(t, h.admin, "POST", "/v1/keyring/rewrap", nil)
	wantProblem(t, r, http.StatusConflict, cp.ECONFLICT, "")
	if p := r.problem(t); !strings.Contains(p.Detail, "credentials cred_") || !strings.Contains(p.Detail, "cannot be rewrapped") {
		t.Fatalf("the refusal does not name the credential: %q", p.Detail)
	}
}
