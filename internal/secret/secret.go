// Package secret holds credentials in a type that never prints them.
//
// A Secret formats as "<secret>" with every fmt verb, marshals as "<secret>"
// to JSON, YAML and text, and hides its value even when it sits in an
// unexported field of a struct printed with %+v or %#v. The only way to read
// the value is Reveal, so every place that uses a credential is easy to find.
package secret

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	"gopkg.in/yaml.v3"
)

const (
	// Placeholder is what a set Secret prints and marshals as.
	Placeholder = "<secret>"
	// EmptyPlaceholder is what an unset Secret prints as.
	EmptyPlaceholder = "<empty>"
)

// Secret is a credential: a password, a token, a webhook key.
//
// The value sits behind a pointer on purpose: fmt prints the fields of an
// unexported struct field by reflection, without calling String or Format, and
// a string field would be printed verbatim. A pointer nested in a struct is
// printed as an address, so the value cannot escape through %v, %+v, %#v or %x
// on an enclosing struct, whatever the field's name.
//
// The zero value is an empty Secret. Secrets are immutable and safe to copy.
// Compare them with Equal: == compares identity, not values.
type Secret struct{ v *string }

// New wraps s. New("") is the empty Secret.
func New(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{v: &s}
}

// Reveal returns the value. Call it only where the credential is used (an
// Authorization header, an HMAC key), never to log or display it.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return *s.v
}

// IsZero reports whether the Secret is empty. yaml's omitempty honours it.
func (s Secret) IsZero() bool { return s.v == nil || *s.v == "" }

// Equal reports whether s and o hold the same value, in constant time with
// respect to the contents.
func (s Secret) Equal(o Secret) bool {
	return subtle.ConstantTimeCompare([]byte(s.Reveal()), []byte(o.Reveal())) == 1
}

func (s Secret) placeholder() string {
	if s.IsZero() {
		return EmptyPlaceholder
	}
	return Placeholder
}

// String returns "<secret>", or "<empty>" when unset.
func (s Secret) String() string { return s.placeholder() }

// GoString returns "<secret>", or "<empty>" when unset.
func (s Secret) GoString() string { return s.placeholder() }

// Format prints the placeholder for every verb (%v %+v %#v %s %q %x %X %d ...),
// honouring only width and the '-' flag so tables stay aligned.
func (s Secret) Format(f fmt.State, _ rune) {
	p := s.placeholder()
	if w, ok := f.Width(); ok && w > len(p) {
		pad := make([]byte, w-len(p))
		for i := range pad {
			pad[i] = ' '
		}
		if f.Flag('-') {
			p += string(pad)
		} else {
			p = string(pad) + p
		}
	}
	_, _ = f.Write([]byte(p))
}

// LogValue makes log/slog print the placeholder.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.placeholder()) }

// MarshalJSON returns "<secret>" (or "" when unset, so an absent credential
// stays visibly absent).
func (s Secret) MarshalJSON() ([]byte, error) {
	if s.IsZero() {
		return []byte(`""`), nil
	}
	return []byte(`"` + Placeholder + `"`), nil
}

// MarshalText returns "<secret>" (or "" when unset). It also covers encoders
// that use encoding.TextMarshaler, such as slog and map keys in JSON.
func (s Secret) MarshalText() ([]byte, error) {
	if s.IsZero() {
		return []byte{}, nil
	}
	return []byte(Placeholder), nil
}

// MarshalYAML returns "<secret>" (or "" when unset).
func (s Secret) MarshalYAML() (any, error) {
	if s.IsZero() {
		return "", nil
	}
	return Placeholder, nil
}

// ErrNotScalar is returned when a YAML secret is not a plain value.
var ErrNotScalar = errors.New("must be a single string value, not a list or mapping")

// UnmarshalYAML reads a scalar node verbatim: "0123" stays "0123", "true" stays
// "true". Any other node kind is an error that does not quote the node.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return ErrNotScalar
	}
	*s = New(n.Value)
	return nil
}

// Scrub returns b with every occurrence of each value replaced by
// Placeholder, also in the forms a credential travels or is echoed in: inside
// a JSON string, URL-encoded (a form or query) and base64 (a Basic auth
// header, which encodes "user:password": pass such pairs as values too). It
// is for answers an upstream sent, whose text the bridge shows in errors, logs
// and notes: a proxy or an API that echoes the request's credentials must not
// carry them further. Values shorter than 4 bytes are ignored. b is returned
// as is when it holds none of them.
func Scrub(b []byte, values ...string) []byte {
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		for _, form := range scrubForms(v) {
			if bytes.Contains(b, form) {
				b = bytes.ReplaceAll(b, form, []byte(Placeholder))
			}
		}
	}
	return b
}

func scrubForms(v string) [][]byte {
	forms := [][]byte{[]byte(v), []byte(url.QueryEscape(v)), []byte(url.PathEscape(v)), []byte(base64.StdEncoding.EncodeToString([]byte(v)))}
	for _, html := range []bool{true, false} {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(html)
		if enc.Encode(v) == nil {
			q := bytes.TrimSpace(buf.Bytes())
			forms = append(forms, q[1:len(q)-1])
		}
	}
	return forms
}
