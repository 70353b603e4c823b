package controlplane

import (
	"bufio"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The encrypted backup stream (adr/0021). A backup is written once, read
// whole on restore, and may be larger than memory, so it is sealed in
// chunks:
//
//	"EPBK" 0x01                          magic and format version
//	uint16 len, key id                   keyring key version of the data key
//	uint16 len, wrapped data key         AES-256 key wrapped by the keyring
//	7 bytes                              random nonce prefix
//	chunks: uint32 (bit 31: final, bits 0-30: sealed length), sealed bytes
//
// Each chunk is at most backupChunk bytes of plaintext sealed with
// AES-256-GCM under the data key; its nonce is the prefix, the chunk's
// index (uint32) and the final flag (one byte), and its additional data
// binds it to the backup's id. Reordered, dropped or swapped chunks fail to
// open, a stream cut short lacks its final chunk, and a file of another
// backup does not open under this one's id. The header is not in the
// additional data, so re-wrapping the data key under a newer key version
// rewrites the header alone.

// ErrBackupCorrupt reports a backup stream that does not open: altered,
// truncated, or another backup's.
var ErrBackupCorrupt = errors.New("backup is corrupt or truncated")

const (
	backupMagic       = "EPBK\x01"
	backupChunk       = 64 << 10
	backupNoncePrefix = 7
	backupFinalBit    = 1 << 31
	backupAADLabel    = "envplane.backup.v1"
)

// backupWriter seals what is written to it into w, chunk by chunk.
type backupWriter struct {
	w      io.Writer
	aead   cipher.AEAD
	prefix [backupNoncePrefix]byte
	aad    []byte
	buf    []byte
	out    []byte
	index  uint32
	closed bool
}

// SealBackup wraps a fresh data key with kr's current key, writes the
// stream's header to w and returns the writer that seals the backup's
// bytes; Close writes the final chunk (it does not close w). It returns the
// wrapped data key and the key id that wrapped it (DEKCipher and KeyID;
// the header holds them too), or the keyring's error (wrapped).
func SealBackup(ctx context.Context, kr Keyring, backupID string, w io.Writer) (io.WriteCloser, Sealed, error) {
	dek := make([]byte, dataKeySize)
	defer clear(dek)
	rand.Read(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, Sealed{}, err
	}
	wrapped, keyID, err := kr.Wrap(ctx, dek)
	if err != nil {
		return nil, Sealed{}, fmt.Errorf("cannot wrap data key: %w", err)
	}
	if len(keyID) > 0xffff || len(wrapped) > 0xffff {
		return nil, Sealed{}, errors.New("cannot write backup header: wrapped key too long")
	}
	bw := &backupWriter{w: w, aead: aead, aad: backupAAD(backupID), buf: make([]byte, 0, backupChunk)}
	rand.Read(bw.prefix[:])
	h := []byte(backupMagic)
	h = binary.BigEndian.AppendUint16(h, uint16(len(keyID)))
	h = append(h, keyID...)
	h = binary.BigEndian.AppendUint16(h, uint16(len(wrapped)))
	h = append(h, wrapped...)
	h = append(h, bw.prefix[:]...)
	if _, err := w.Write(h); err != nil {
		return nil, Sealed{}, fmt.Errorf("cannot write backup header: %w", err)
	}
	return bw, Sealed{DEKCipher: wrapped, KeyID: keyID}, nil
}

// Write seals p as it fills chunks.
func (bw *backupWriter) Write(p []byte) (int, error) {
	if bw.closed {
		return 0, errors.New("backup stream is closed")
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), backupChunk-len(bw.buf))
		bw.buf = append(bw.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(bw.buf) == backupChunk {
			if err := bw.flush(false); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Close seals what is buffered as the final chunk. Without it the stream
// reads as truncated.
func (bw *backupWriter) Close() error {
	if bw.closed {
		return nil
	}
	bw.closed = true
	return bw.flush(true)
}

func (bw *backupWriter) flush(final bool) error {
	sealed := bw.aead.Seal(bw.out[:0], backupNonce(bw.prefix, bw.index, final), bw.buf, bw.aad)
	bw.out = sealed
	n := uint32(len(sealed))
	if final {
		n |= backupFinalBit
	}
	var head [4]byte
	binary.BigEndian.PutUint32(head[:], n)
	if _, err := bw.w.Write(head[:]); err != nil {
		return fmt.Errorf("cannot write backup: %w", err)
	}
	if _, err := bw.w.Write(sealed); err != nil {
		return fmt.Errorf("cannot write backup: %w", err)
	}
	bw.buf = bw.buf[:0]
	bw.index++
	return nil
}

// backupHeader is what a stream's header says.
type backupHeader struct {
	KeyID   string
	Wrapped []byte
	Prefix  [backupNoncePrefix]byte
}

// readBackupHeader reads the header from r. ErrBackupCorrupt when it is not one.
func readBackupHeader(r io.Reader) (backupHeader, error) {
	var h backupHeader
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != backupMagic {
		return h, ErrBackupCorrupt
	}
	field := func() ([]byte, error) {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return nil, ErrBackupCorrupt
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, ErrBackupCorrupt
		}
		return b, nil
	}
	keyID, err := field()
	if err != nil {
		return h, err
	}
	if h.Wrapped, err = field(); err != nil {
		return h, err
	}
	if _, err := io.ReadFull(r, h.Prefix[:]); err != nil {
		return h, ErrBackupCorrupt
	}
	h.KeyID = string(keyID)
	return h, nil
}

// backupDataKey returns the data key a stream's header holds, wrapped, and
// the key id that wrapped it. ErrBackupCorrupt when r is not a stream.
func backupDataKey(r io.Reader) (Sealed, error) {
	h, err := readBackupHeader(bufio.NewReader(r))
	if err != nil {
		return Sealed{}, err
	}
	return Sealed{DEKCipher: h.Wrapped, KeyID: h.KeyID}, nil
}

// backupReader opens a stream's chunks in order.
type backupReader struct {
	r      io.Reader
	aead   cipher.AEAD
	prefix [backupNoncePrefix]byte
	aad    []byte
	chunk  []byte
	plain  []byte
	index  uint32
	done   bool
}

// OpenBackup reads the header from r, unwraps the data key with kr and
// returns a reader of the backup's plaintext. The data key is key's when
// it has one (the backup's row keeps it, re-wrapped by keyring rewraps),
// else the header's. Reads fail with ErrBackupCorrupt at the first chunk
// that does not open and at a stream that ends before its final chunk.
// The keyring's error (wrapped) is returned when the data key cannot be
// unwrapped, such as under a retired key version.
func OpenBackup(ctx context.Context, kr Keyring, backupID string, key Sealed, r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, backupChunk+64)
	h, err := readBackupHeader(br)
	if err != nil {
		return nil, err
	}
	if len(key.DEKCipher) == 0 {
		key = Sealed{DEKCipher: h.Wrapped, KeyID: h.KeyID}
	}
	dek, err := unwrap(ctx, kr, key)
	if err != nil {
		return nil, err
	}
	defer clear(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	return &backupReader{r: br, aead: aead, prefix: h.Prefix, aad: backupAAD(backupID)}, nil
}

// Read returns the plaintext, one chunk at a time.
func (b *backupReader) Read(p []byte) (int, error) {
	for len(b.plain) == 0 {
		if b.done {
			return 0, io.EOF
		}
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.plain)
	b.plain = b.plain[n:]
	return n, nil
}

func (b *backupReader) next() error {
	var head [4]byte
	if _, err := io.ReadFull(b.r, head[:]); err != nil {
		return ErrBackupCorrupt
	}
	n := binary.BigEndian.Uint32(head[:])
	final := n&backupFinalBit != 0
	n &^= backupFinalBit
	if n > backupChunk+uint32(b.aead.Overhead()) {
		return ErrBackupCorrupt
	}
	if cap(b.chunk) < int(n) {
		b.chunk = make([]byte, n)
	}
	b.chunk = b.chunk[:n]
	if _, err := io.ReadFull(b.r, b.chunk); err != nil {
		return ErrBackupCorrupt
	}
	plain, err := b.aead.Open(b.chunk[:0], backupNonce(b.prefix, b.index, final), b.chunk, b.aad)
	if err != nil {
		return ErrBackupCorrupt
	}
	b.plain, b.index = plain, b.index+1
	if final {
		// Nothing may follow the final chunk.
		if _, err := b.r.Read(head[:1]); err != io.EOF {
			return ErrBackupCorrupt
		}
		b.done = true
	}
	return nil
}

func backupNonce(prefix [backupNoncePrefix]byte, index uint32, final bool) []byte {
	nonce := make([]byte, 0, 12)
	nonce = append(nonce, prefix[:]...)
	nonce = binary.BigEndian.AppendUint32(nonce, index)
	if final {
		return append(nonce, 1)
	}
	return append(nonce, 0)
}

func backupAAD(backupID string) []byte {
	b := make([]byte, 0, len(backupAADLabel)+4+len(backupID))
	b = append(b, backupAADLabel...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(backupID)))
	return append(b, backupID...)
}
