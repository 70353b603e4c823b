package vault

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/envplane/envplane/controlplane"
)

// maxBatch bounds the items sent to Vault in one request; longer batches are
// sent in parts, so a caller may pass any number.
const maxBatch = 250

// Wrapped is a data key wrapped by the keyring: Transit's ciphertext and the
// key id of the version that wrapped it.
type Wrapped = controlplane.WrappedKey

// batchItem is one entry of Transit's batch_results. Plaintext is decoded
// from base64 straight into bytes the caller can clear.
type batchItem struct {
	Ciphertext string `json:"ciphertext"`
	Plaintext  []byte `json:"plaintext"`
	KeyVersion int    `json:"key_version"`
	Error      string `json:"error"`
}

type batchResults struct {
	BatchResults []batchItem `json:"batch_results"`
}

// WrapBatch wraps each data key under the Transit key's newest version, in
// as few requests as maxBatch allows, and returns them in order. It fails
// like Wrap, as a whole: no result is returned if any key fails.
func (k *Keyring) WrapBatch(ctx context.Context, dataKeys [][]byte) ([]Wrapped, error) {
	if err := k.ready(ctx); err != nil {
		return nil, err
	}
	out := make([]Wrapped, 0, len(dataKeys))
	for part := range slices.Chunk(dataKeys, maxBatch) {
		body := encryptBody(part)
		var res batchResults
		err := k.write(ctx, k.mount+"/encrypt/"+k.key, body, &res)
		clear(body)
		if err != nil {
			return nil, fmt.Errorf("vault keyring: cannot wrap under %s: %w", k.mount+"/"+k.key, err)
		}
		if len(res.BatchResults) != len(part) {
			return nil, fmt.Errorf("vault keyring: cannot wrap: vault answered %d results for %d keys", len(res.BatchResults), len(part))
		}
		for i, item := range res.BatchResults {
			if item.Error != "" {
				return nil, fmt.Errorf("vault keyring: cannot wrap key %d: %w (vault: %s)", len(out)+i, ErrRejected, scrub(item.Error, k.client.Token()))
			}
			version, ok := cipherVersion(item.Ciphertext)
			if !ok {
				return nil, fmt.Errorf("vault keyring: cannot wrap key %d: vault's ciphertext has no version", len(out)+i)
			}
			out = append(out, Wrapped{Cipher: []byte(item.Ciphertext), KeyID: k.keyID(version)})
		}
	}
	return out, nil
}

// UnwrapBatch unwraps each wrapped data key and returns the data keys in
// order. It fails like Unwrap, as a whole, naming the first item that
// failed; no data key is returned then.
func (k *Keyring) UnwrapBatch(ctx context.Context, ws []Wrapped) ([][]byte, error) {
	if err := k.ready(ctx); err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(ws))
	fail := func(err error) ([][]byte, error) {
		for _, dk := range out {
			clear(dk)
		}
		return nil, err
	}
	for part := range slices.Chunk(ws, maxBatch) {
		res, err := k.transitBatch(ctx, "decrypt", "unwrap", len(out), part)
		if err != nil {
			return fail(err)
		}
		for _, item := range res {
			out = append(out, item.Plaintext)
		}
	}
	return out, nil
}

// Rewrap re-wraps a wrapped data key under the Transit key's newest version
// inside Vault (transit/rewrap), so the data key is never exposed, and
// returns the new wrapped key and its key id. A key already under the newest
// version gets a fresh wrapping. It fails like Unwrap.
func (k *Keyring) Rewrap(ctx context.Context, wrapped []byte, keyID string) ([]byte, string, error) {
	ws, err := k.RewrapBatch(ctx, []Wrapped{{Cipher: wrapped, KeyID: keyID}})
	if err != nil {
		return nil, "", err
	}
	return ws[0].Cipher, ws[0].KeyID, nil
}

// RewrapBatch re-wraps each wrapped data key under the newest version, like
// Rewrap, and returns them in order. It fails as a whole, naming the first
// item that failed.
func (k *Keyring) RewrapBatch(ctx context.Context, ws []Wrapped) ([]Wrapped, error) {
	if err := k.ready(ctx); err != nil {
		return nil, err
	}
	out := make([]Wrapped, 0, len(ws))
	for part := range slices.Chunk(ws, maxBatch) {
		res, err := k.transitBatch(ctx, "rewrap", "rewrap", len(out), part)
		if err != nil {
			return nil, err
		}
		for i, item := range res {
			version, ok := cipherVersion(item.Ciphertext)
			if !ok {
				return nil, fmt.Errorf("vault keyring: cannot rewrap item %d: vault's ciphertext has no version", len(out)+i)
			}
			out = append(out, Wrapped{Cipher: []byte(item.Ciphertext), KeyID: k.keyID(version)})
		}
	}
	return out, nil
}

// transitBatch sends ws (items offset.. of the caller's batch) to
// transit/decrypt or transit/rewrap and returns the results in order. The
// key ids and versions are checked first, so nothing that cannot be this
// keyring's is sent. An item Vault refuses is classified by the key's
// versions (retired, unknown, else altered), never by matching Vault's
// words, which the error quotes for operators.
func (k *Keyring) transitBatch(ctx context.Context, endpoint, op string, offset int, ws []Wrapped) ([]batchItem, error) {
	type input struct {
		Ciphertext string `json:"ciphertext"`
	}
	in := make([]input, len(ws))
	versions := make([]int, len(ws))
	for i, w := range ws {
		version, err := k.parseKeyID(w.KeyID)
		if err != nil {
			return nil, fmt.Errorf("vault keyring: cannot %s item %d: %w", op, offset+i, err)
		}
		if v, ok := cipherVersion(string(w.Cipher)); !ok || v != version {
			return nil, fmt.Errorf("vault keyring: cannot %s item %d under %s: %w", op, offset+i, w.KeyID, ErrUnwrap)
		}
		in[i], versions[i] = input{Ciphertext: string(w.Cipher)}, version
	}
	body, err := json.Marshal(struct {
		BatchInput []input `json:"batch_input"`
	}{in})
	if err != nil {
		return nil, fmt.Errorf("vault keyring: cannot %s: %w", op, err)
	}
	var res batchResults
	err = k.write(ctx, k.mount+"/"+endpoint+"/"+k.key, body, &res)
	// A batch with failed items answers 400 but still lists every item;
	// anything else (denied, unreachable, no such key) fails the call.
	if err != nil && !(isStatus(err, http.StatusBadRequest) && len(res.BatchResults) == len(ws)) {
		k.clearResults(res)
		return nil, fmt.Errorf("vault keyring: cannot %s under %s: %w", op, k.mount+"/"+k.key, err)
	}
	if len(res.BatchResults) != len(ws) {
		k.clearResults(res)
		return nil, fmt.Errorf("vault keyring: cannot %s: vault answered %d results for %d keys", op, len(res.BatchResults), len(ws))
	}
	for i, item := range res.BatchResults {
		if item.Error == "" {
			continue
		}
		k.clearResults(res)
		return nil, fmt.Errorf("vault keyring: cannot %s item %d under %s: %w (vault: %s)", op, offset+i, ws[i].KeyID, k.explain(ctx, versions[i]), scrub(item.Error, k.client.Token()))
	}
	return res.BatchResults, nil
}

// explain says why Vault refused a wrapped key of the given version, from
// the key's versions: retired, unknown, or else altered.
func (k *Keyring) explain(ctx context.Context, version int) error {
	info, err := k.Key(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("%w (and the key's versions could not be read: %w)", ErrUnwrap, err)
	case version < info.MinDecryptionVersion:
		return fmt.Errorf("%w (min_decryption_version is %d)", ErrRetiredVersion, info.MinDecryptionVersion)
	case version > info.LatestVersion:
		return fmt.Errorf("%w (the latest version is %d)", ErrUnknownVersion, info.LatestVersion)
	default:
		return ErrUnwrap
	}
}

func (k *Keyring) clearResults(res batchResults) {
	for _, item := range res.BatchResults {
		clear(item.Plaintext)
	}
}

// encryptBody returns {"batch_input":[{"plaintext":"<base64>"},...]} in one
// allocation of the exact size, so the caller can clear the only copy of
// the data keys it holds.
func encryptBody(dataKeys [][]byte) []byte {
	const head, open, tail = `{"batch_input":[`, `{"plaintext":"`, `"}`
	size := len(head) + len("]}")
	for i, dk := range dataKeys {
		if i > 0 {
			size++
		}
		size += len(open) + base64.StdEncoding.EncodedLen(len(dk)) + len(tail)
	}
	b := make([]byte, 0, size)
	b = append(b, head...)
	for i, dk := range dataKeys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, open...)
		b = base64.StdEncoding.AppendEncode(b, dk)
		b = append(b, tail...)
	}
	return append(b, "]}"...)
}

// cipherVersion returns the key version a Transit ciphertext names
// ("vault:v3:..." is 3).
func cipherVersion(ciphertext string) (int, bool) {
	rest, ok := strings.CutPrefix(ciphertext, "vault:v")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, ":")
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(digits)
	return v, err == nil && v > 0
}
