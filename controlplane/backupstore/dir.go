// Package backupstore holds the places envplane keeps backups in. Dir, a
// directory on the control plane's disk, is the default; an object store
// implements the same three calls (controlplane.BackupStore).
package backupstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/envplane/envplane/controlplane"
)

var _ controlplane.BackupStore = (*Dir)(nil)

// Dir keeps each backup as one file, named after its key, in a directory
// of mode 0700.
type Dir struct {
	dir string
}

// NewDir returns a store in dir, creating it (mode 0700) when absent. It
// fails when dir is empty, cannot be created, or is open to group or others.
func NewDir(dir string) (*Dir, error) {
	if dir == "" {
		return nil, errors.New("backup store: dir is required")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backup store: cannot resolve dir: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("backup store: cannot create dir: %w", err)
	}
	info, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("backup store: cannot stat dir: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("backup store: dir %s has mode %#o; it must not be accessible to group or others (chmod 0700)", abs, perm)
	}
	return &Dir{dir: abs}, nil
}

// path returns key's file. Keys are the control plane's ids: anything else
// is refused, so no key reaches outside the directory.
func (d *Dir) path(key string) (string, error) {
	if !controlplane.ValidBackupKey(key) {
		return "", fmt.Errorf("backup store: invalid key %q", key)
	}
	return filepath.Join(d.dir, key+".backup"), nil
}

// Put writes r to a temporary file, syncs it and renames it to key's
// file, so the object appears whole or not at all; it replaces an object
// of that key. It returns the bytes written.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	p, err := d.path(key)
	if err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(d.dir, key+".*.tmp")
	if err != nil {
		return 0, fmt.Errorf("backup store: cannot create file: %w", err)
	}
	tmp := f.Name()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return 0, fmt.Errorf("backup store: cannot write %s: %w", key, err)
	}
	return n, syncDir(d.dir)
}

// Open returns key's bytes; ENOTFOUND when there is no such object.
func (d *Dir) Open(_ context.Context, key string) (io.ReadCloser, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, controlplane.Errorf(controlplane.ENOTFOUND, "backup file %s is missing", key)
	}
	if err != nil {
		return nil, fmt.Errorf("backup store: cannot open %s: %w", key, err)
	}
	return f, nil
}

// Delete removes key's object; absent is success.
func (d *Dir) Delete(_ context.Context, key string) error {
	p, err := d.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup store: cannot delete %s: %w", key, err)
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup store: cannot sync dir: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup store: cannot sync dir: %w", err)
	}
	return nil
}
