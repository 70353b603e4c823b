package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	cp "github.com/envplane/envplane/controlplane"
)

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// idempotent makes a POST replayable: the first answer to a key (per API
// key) is stored, the same key with the same body replays it, the same key
// with another body is 422, and a key whose first request is still running is
// 409. Answers of 5xx are not stored, so a retry runs again. With redactToken
// the stored answer's "token" field is blanked: a token is shown once and
// never kept.
func (s *Server) idempotent(redactToken bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			key := c.Request().Header.Get("Idempotency-Key")
			if key == "" {
				return next(c)
			}
			if len(key) > maxIdempotencyKey {
				return cp.Invalid(cp.FieldError{Field: "Idempotency-Key", Message: "must be at most 255 characters"})
			}
			body, err := io.ReadAll(c.Request().Body)
			if err != nil {
				return cp.Errorf(cp.EMALFORMED, "cannot read the request body")
			}
			c.Request().Body = io.NopCloser(bytes.NewReader(body))
			sum := sha256.Sum256(append([]byte(c.Request().Method+" "+c.Request().URL.Path+"\n"), body...))
			hash := hex.EncodeToString(sum[:])
			owner := principal(c).KeyID
			ctx := c.Request().Context()
			store := s.svc.Store

			rec := &cp.IdempotencyRecord{Owner: owner, Key: key, RequestHash: hash, CreatedAt: s.svc.Now()}
			if err := store.CreateIdempotencyRecord(ctx, rec); err != nil {
				if !cp.IsCode(err, cp.ECONFLICT) {
					return err
				}
				prev, err := store.GetIdempotencyRecord(ctx, owner, key)
				if err != nil {
					return err
				}
				switch {
				case prev.RequestHash != hash:
					return cp.Errorf(cp.EIDEMPOTENCY, "the Idempotency-Key was used with another request")
				case prev.StatusCode == 0 && s.svc.Now().Sub(prev.CreatedAt) < s.abandonAfter():
					return cp.Errorf(cp.ECONFLICT, "a request with this Idempotency-Key is still running")
				case prev.StatusCode == 0:
					// The first request's process died before answering: the
					// key is free again, and this request is the first.
					if err := store.DeleteIdempotencyRecord(ctx, owner, key); err != nil {
						return err
					}
					if err := store.CreateIdempotencyRecord(ctx, rec); err != nil {
						return err
					}
					return s.runIdempotent(c, next, rec, redactToken)
				}
				c.Response().Header().Set("Idempotent-Replayed", "true")
				if loc := replayedLocation(prev.StatusCode, prev.Response); loc != "" {
					c.Response().Header().Set(echo.HeaderLocation, loc)
				}
				// Every stored answer is JSON: a problem when it is an error.
				contentType := echo.MIMEApplicationJSON
				if prev.StatusCode >= 400 {
					contentType = ProblemContentType
				}
				return c.Blob(prev.StatusCode, contentType, prev.Response)
			}

			return s.runIdempotent(c, next, rec, redactToken)
		}
	}
}

// abandonAfter is how long a first request may run before its key is
// considered abandoned (its process died): longer than any request waits.
func (s *Server) abandonAfter() time.Duration { return s.maxWait + time.Minute }

// runIdempotent runs the first request of a key and stores its answer; a 5xx
// answer or a panic releases the key instead, so a retry runs again.
func (s *Server) runIdempotent(c echo.Context, next echo.HandlerFunc, rec *cp.IdempotencyRecord, redactToken bool) error {
	store := s.svc.Store
	ctx := context.WithoutCancel(c.Request().Context())
	release := func() {
		if err := store.DeleteIdempotencyRecord(ctx, rec.Owner, rec.Key); err != nil {
			s.logger.Error("cannot release idempotency key", "err", err)
		}
	}
	rw := &recorder{ResponseWriter: c.Response().Writer}
	c.Response().Writer = rw
	err := func() error {
		defer func() {
			if r := recover(); r != nil {
				release()
				panic(r)
			}
		}()
		return next(c)
	}()
	if err != nil {
		c.Error(err)
	}
	status := c.Response().Status
	if status >= 500 || status == 0 {
		release()
		return nil
	}
	stored := rw.body.Bytes()
	if redactToken {
		stored = withoutToken(stored)
	}
	if err := store.CompleteIdempotencyRecord(ctx, rec.Owner, rec.Key, status, stored); err != nil {
		s.logger.Error("cannot store idempotent answer", "err", err)
	}
	return nil
}

// withoutToken blanks the "token" field of a JSON object.
func withoutToken(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	if _, ok := m["token"]; !ok {
		return body
	}
	m["token"] = json.RawMessage(`""`)
	out, err := json.Marshal(m)
	if err != nil {
		return []byte("{}")
	}
	return out
}

// replayedLocation returns the Location a stored 202 was sent with: its
// operation's path, which its body holds.
func replayedLocation(status int, body []byte) string {
	if status != http.StatusAccepted {
		return ""
	}
	var b struct {
		Operation struct {
			ID string `json:"id"`
		} `json:"operation"`
	}
	if json.Unmarshal(body, &b) != nil || b.Operation.ID == "" {
		return ""
	}
	return operationPath(b.Operation.ID)
}

// recorder copies what a handler writes, to store it for replay.
type recorder struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}
