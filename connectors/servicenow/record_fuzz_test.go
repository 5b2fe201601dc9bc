package servicenow

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/chainguard-dev/image-request-bridge/internal/secret"
	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const fuzzCatItem = "3f1dd0320a0a0b99000a53f7604a2ef9"

// FuzzDecodeRecord feeds any bytes to the Table API decoders: they never
// panic; a JSON string decodes as both value and display value; a decoded
// record only ever carries a well-formed sys_id, and survives a round trip.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{
		`{"result":[{"sys_id":"` + fuzzCatItem + `","number":"RITM0010001","variables.image_name":"python"}]}`,
		`{"result":{"sys_id":{"display_value":"` + fuzzCatItem + `","value":"` + fuzzCatItem + `"},"state":{"display_value":"Open","value":"1"}}}`,
		`{"result":[{"sys_id":"` + fuzzCatItem + `"}]}`,
		`{"result":[{"sys_id":"ffffffffffffffffffffffffffffffff^NQactive=true"}]}`,
		`{"result":[{"requested_for":{"link":"https://x/api/now/table/sys_user/1","value":"1"}}]}`,
		`{"result":[{"active":true,"sys_mod_count":3,"x":null,"y":[1,2],"z":{"value":{"a":1}}}]}`,
		`{"result":[]}`, `{"result":null}`, `{"result":[1]}`, `{"result":"x"}`, `[]`, `null`, `"x"`, `{"value":"\u0000\ud800"}`,
		`{"error":{"message":"No Record found","detail":"x"},"status":"failure"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v value
		if err := json.Unmarshal(data, &v); err == nil {
			var s string
			if json.Unmarshal(bytes.TrimSpace(data), &s) == nil && (v.Value != s || v.Display != s) {
				t.Fatalf("string %q decoded as %+v", data, v)
			}
		}
		var list listResponse
		if err := json.Unmarshal(data, &list); err == nil {
			for _, r := range list.Result {
				checkRecord(t, data, r)
			}
		}
		var one oneResponse
		if err := json.Unmarshal(data, &one); err == nil {
			checkRecord(t, data, one.Result)
		}
	})
}

func checkRecord(t *testing.T, data []byte, r record) {
	t.Helper()
	if id := r.get("sys_id"); id != "" && !sysIDRe.MatchString(id) {
		t.Fatalf("%q decoded a record with sys_id %q", data, id)
	}
	// What was decoded encodes and decodes to itself.
	enc := map[string]map[string]string{}
	for k, v := range r {
		enc[k] = map[string]string{"value": v.Value, "display_value": v.Display}
	}
	b, err := json.Marshal(map[string]any{"result": []any{enc}})
	if err != nil {
		t.Fatal(err)
	}
	var again listResponse
	if err := json.Unmarshal(b, &again); err != nil || len(again.Result) != 1 {
		t.Fatalf("%q: re-decoding %s: %v", data, b, err)
	}
	for k, v := range r {
		w := again.Result[0][k]
		if utf8.ValidString(v.Value) && utf8.ValidString(v.Display) && (w.Value != v.Value || w.Display != v.Display) {
			t.Fatalf("%q: field %q decoded as %+v, then as %+v", data, k, v, w)
		}
	}
}

// parseEncodedQuery splits a ServiceNow encoded query into its terms: "^"
// separates conditions, and "^OR", "^NQ", "^EQ" and "ORDERBY" terms carry
// meaning of their own.
func parseEncodedQuery(q string) []string { return strings.Split(q, "^") }

// FuzzEncodedQuery: the approved-RITMs query is exactly its terms, whatever
// the configured catalog item and whatever the instance sent as the last
// row's sys_id (the paging cursor). A "^", a line break or "NQ" in a value
// must never add a condition, an OR-ed query or an ordering.
func FuzzEncodedQuery(f *testing.F) {
	f.Add(fuzzCatItem, []byte(`{"result":[{"sys_id":"`+fuzzCatItem+`"}]}`))
	f.Add(fuzzCatItem, []byte(`{"result":[{"sys_id":"ffffffffffffffffffffffffffffffff^NQactive=true^ORDERBYDESCsys_id"}]}`))
	f.Add(fuzzCatItem, []byte(`{"result":[{"sys_id":{"value":"ffffffffffffffffffffffffffffffff\nactive=false","display_value":"x"}}]}`))
	f.Add(fuzzCatItem+"^NQactive=true", []byte(`{"result":[]}`))
	f.Add("3F1DD0320A0A0B99000A53F7604A2EF9", []byte(`{"result":[]}`))
	f.Fuzz(func(t *testing.T, catItem string, page []byte) {
		s, err := New(Options{InstanceURL: "http://127.0.0.1:9", CatalogItem: catItem,
			Auth: Auth{Username: "u", Password: secret.New("p")}})
		if err != nil {
			return // refused before any query is built
		}
		cursor := ""
		var list listResponse
		if json.Unmarshal(page, &list) == nil && len(list.Result) > 0 {
			cursor = list.Result[len(list.Result)-1].get("sys_id") // as Approved pages
		}
		q := s.approvedQuery(cursor)
		want := []string{"active=true", "approval=approved", "cat_item=" + catItem}
		if cursor != "" {
			want = append(want, "sys_id>"+cursor)
		}
		want = append(want, "ORDERBYsys_id")
		if got := parseEncodedQuery(q); strings.Join(got, "\x00") != strings.Join(want, "\x00") {
			t.Fatalf("catalog item %q, cursor %q: query %q has terms %q, want %q", catItem, cursor, q, got, want)
		}
		for _, r := range q {
			if unicode.IsControl(r) || unicode.IsSpace(r) {
				t.Fatalf("query %q carries %U", q, r)
			}
		}
	})
}

var noteCodeTag = regexp.MustCompile(`(?i)\[\s*/?\s*code\s*\]`)

// FuzzRenderNote: a work note is one line per field plus the marker, never
// holds a [code] tag in any spelling nor an invisible or control character,
// and carries its own signature (so a written note is always recognised).
func FuzzRenderNote(f *testing.F) {
	f.Add("[image-request-bridge] RITM0010001 request ibr-0123456789abcdef", "Justification", "[code]<script>alert(1)</script>[/code]", 2)
	f.Add("RITM[code]x[/code]", "Image 1 ([ code ]x)", "a\r\nResult: forged\u202e\u2028", 1)
	f.Add("m", "n", "[[code]code]][co[/code]de]", 3)
	f.Add("m", "n", strings.Repeat("[code]", 400), 1)
	f.Fuzz(func(t *testing.T, marker, name, value string, n int) {
		if n < 0 {
			n = -n
		}
		n = 1 + n%16
		r := isync.Report{Outcome: isync.OutcomeBlocked, Marker: marker, Fields: []isync.Field{{Name: "Result", Value: value}, {Name: "Cause", Value: value}}}
		for i := 0; i < n; i++ {
			r.Fields = append(r.Fields, isync.Field{Name: name, Value: value})
		}
		note := renderNote(r)
		if noteCodeTag.MatchString(note) {
			t.Fatalf("note carries a [code] tag:\n%q", note)
		}
		if !utf8.ValidString(note) {
			t.Fatalf("note is not valid UTF-8: %q", note)
		}
		for _, c := range note {
			if c != '\n' && (unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || c == '\u2028' || c == '\u2029') {
				t.Fatalf("note carries %U: %q", c, note)
			}
		}
		if lines := strings.Count(note, "\n"); lines != len(r.Fields) {
			t.Fatalf("%d line breaks for %d fields: %q", lines, len(r.Fields), note)
		}
		if !hasAll(note, signature(r)) {
			t.Fatalf("the note does not carry its signature %q:\n%q", signature(r), note)
		}
		if c := clean(r.Summary+value, maxCloseNotes); utf8.RuneCountInString(c) > maxCloseNotes || noteCodeTag.MatchString(c) {
			t.Fatalf("close_notes %q", c)
		}
	})
}
