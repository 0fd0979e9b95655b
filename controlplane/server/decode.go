package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/idemgate/idemgate/controlplane/api"
)

// Request body limits.
//
// A complete carries the stored response: status, headers and a body of up
// to the store's cap (MaxStoredResponse, default 1 MiB), the body
// base64-encoded in JSON, i.e. 4/3 of its size. DefaultMaxRequestBytes
// allows twice the cap plus 64 KiB: the base64 body (1.33 × cap) leaves
// 0.67 × cap for the JSON escaping of headers (a header byte can take up to
// 6 bytes as \u00XX) and the framing (scope, key, token: ≤ 255 bytes each).
// MinRequestBytes is the smallest limit that still carries a body at the
// cap; a smaller one would turn a complete that the store accepts into a
// 413 and leave the key in progress until its lease ends.
//
// Reserve and release carry only names (≤ 255 bytes each), so they get
// smallBodyLimit whatever the setting.
const (
	smallBodyLimit  = 64 << 10
	framingOverhead = 16 << 10
)

// DefaultMaxRequestBytes is the default request size limit for a given
// cap on stored responses: 2 × maxStored + 64 KiB (2,162,688 bytes for the
// default 1 MiB cap).
func DefaultMaxRequestBytes(maxStored int) int64 {
	return 2*int64(maxStored) + 64<<10
}

// MinRequestBytes is the smallest request size limit that carries a
// complete whose body is maxStored bytes: its base64 length plus 16 KiB.
func MinRequestBytes(maxStored int) int64 {
	return 4*((int64(maxStored)+2)/3) + framingOverhead
}

// decodeJSON reads one JSON object of at most limit bytes from r's body
// into v, refusing unknown fields, duplicate members (at any depth) and
// trailing data. Errors name the field or the byte offset.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *problem {
	if r.ContentLength > limit {
		// Close the connection after the answer: otherwise net/http,
		// to keep it, first reads up to 256 KiB of the body we refuse,
		// and the 413 waits for a client that may be waiting for it.
		w.Header().Set("Connection", "close")
		return tooLarge(limit)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if p := sizeProblem(err, limit); p != nil {
			return p
		}
		return badRequest("cannot read the request body: " + err.Error())
	}
	// Duplicate members first: encoding/json would keep the last one, a
	// proxy or the filter's own parser may have read the first.
	if err := api.CheckDuplicateMembers(b); err != nil {
		return badRequest(err.Error())
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err, limit)
	}
	// Exactly one value: "{...}{...}" or "{...} x" is refused.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			if p := sizeProblem(err, limit); p != nil {
				return p
			}
		}
		return badRequest("request body has data after the JSON object")
	}
	return nil
}

func tooLarge(limit int64) *problem {
	return &problem{http.StatusRequestEntityTooLarge, probTooLarge, "Request too large",
		fmt.Sprintf("the request body is larger than %d bytes", limit)}
}

func sizeProblem(err error, limit int64) *problem {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(limit)
	}
	return nil
}

func jsonProblem(err error, limit int64) *problem {
	if p := sizeProblem(err, limit); p != nil {
		return p
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		b64 base64.CorruptInputError
		hdr *api.HeaderError
	)
	switch {
	case errors.As(err, &hdr):
		// A stored header that is not exactly [name, value] strings.
		return badRequest(hdr.Error())
	case errors.Is(err, io.EOF):
		return badRequest("the request body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: the body ends in the middle of a value")
	case errors.As(err, &syn):
		return badRequest(fmt.Sprintf("malformed JSON at byte offset %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: ")))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest(fmt.Sprintf("the request body is JSON %s; want an object", typ.Value))
		}
		return badRequest(fmt.Sprintf("field %q: want %s, got JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value))
	case errors.As(err, &b64):
		// The only []byte field of any request is the stored response's body.
		return badRequest(fmt.Sprintf("field \"response.body\": not valid base64 (byte %d)", int64(b64)))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badRequest(strings.TrimPrefix(err.Error(), "json: ") + " in the request body")
	}
	return badRequest("malformed JSON: " + err.Error())
}

// jsonKind names a Go kind the way a JSON client thinks of it.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice", kind == "array":
		return "an array"
	case kind == "struct", kind == "map", kind == "ptr":
		return "an object"
	}
	return kind
}
