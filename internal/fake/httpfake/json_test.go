package httpfake

import (
	"bytes"
	"encoding/json"
	"testing"
)

// AppendJSON must write exactly what encoding/json (HTML escaping off) does.
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, "", "plain", "quote \" backslash \\ slash /", "<html> & </html>", "\x00\x01\x1f\x7f tab\t nl\n cr\r bs\b ff\f",
		"bad utf8 \xff\xfe end", "line\u2028para\u2029", "ünïcødé ✓ 😀", true, false, 0, -42, int64(1) << 40, 3.25,
		[]string{"a", "b\"c"}, []string(nil), []any{1, "x", nil, object{{"k", "v"}}}, []any(nil),
		map[string]any{"z": 1, "a": object{{"b", []object{{{"c", nil}}}}}},
		object{{"z", 1}, {"a", "<&>"}, {"nested", object{{"list", []object{{{"x", true}}, {}}}}}},
		object(nil), []object(nil), []object{},
	}
	for _, v := range values {
		got, err := AppendJSON[object](nil, v)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		want, err := MarshalStd(v)
		if err != nil {
			t.Fatalf("%#v: %v", v, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%#v:\n got %s\nwant %s", v, got, want)
		}
		if !json.Valid(got) {
			t.Errorf("%#v: invalid JSON %s", v, got)
		}
	}
}

// object is an ordered JSON object, as the fakes define it.
type object []member

type member struct {
	key   string
	value any
}

func (m member) KeyValue() (string, any) { return m.key, m.value }

func (o object) MarshalJSON() ([]byte, error) { return AppendJSON[object](nil, o) }
