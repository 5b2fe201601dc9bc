package secret

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const value = "hunter2-Sup3rS3cret"

// leaks reports whether out contains the secret in any of the encodings a
// printer could produce: verbatim, hex, or as a list of byte values.
func leaks(out string) bool {
	if strings.Contains(out, value) {
		return true
	}
	if strings.Contains(strings.ToLower(out), fmt.Sprintf("%x", value)) {
		return true
	}
	if strings.Contains(out, fmt.Sprintf("%d", []byte(value))) {
		return true
	}
	if strings.Contains(out, fmt.Sprintf("% x", value)) {
		return true
	}
	return false
}

var verbs = []string{
	"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%d", "%t", "%T", "%p",
	"%10v", "%-10s", "%.3s", "%08d", "%U", "%c", "%o", "%b", "%e", "%g",
}

func TestNewRevealIsZero(t *testing.T) {
	s := New(value)
	if s.Reveal() != value {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	if s.IsZero() {
		t.Fatal("IsZero on a set secret")
	}
	var z Secret
	if !z.IsZero() || z.Reveal() != "" {
		t.Fatal("zero Secret is not empty")
	}
	if !New("").IsZero() {
		t.Fatal(`New("") is not zero`)
	}
	if !s.Equal(New(value)) || s.Equal(New("other")) || !z.Equal(New("")) {
		t.Fatal("Equal compares wrongly")
	}
}

func TestEveryVerbHides(t *testing.T) {
	s := New(value)
	for _, verb := range verbs {
		for _, arg := range []any{s, &s} {
			out := fmt.Sprintf(verb, arg)
			if leaks(out) {
				t.Errorf("%s on %T leaks: %s", verb, arg, out)
			}
			if verb != "%T" && verb != "%p" && !strings.Contains(out, Placeholder) {
				// %p prints a pointer address for &s; %T prints the type.
				if _, isPtr := arg.(*Secret); !(isPtr && verb == "%p") {
					t.Errorf("%s on %T = %q, want it to show %s", verb, arg, out, Placeholder)
				}
			}
		}
	}
	if got := fmt.Sprint(s); got != Placeholder {
		t.Errorf("Sprint = %q", got)
	}
	if got := fmt.Sprintln(s); got != Placeholder+"\n" {
		t.Errorf("Sprintln = %q", got)
	}
	if got := s.String(); got != Placeholder {
		t.Errorf("String = %q", got)
	}
	if got := s.GoString(); got != Placeholder {
		t.Errorf("GoString = %q", got)
	}
	if got := fmt.Sprintf("[%10v]", s); got != "[  <secret>]" {
		t.Errorf("width: %q", got)
	}
	if got := fmt.Sprintf("[%-10v]", s); got != "[<secret>  ]" {
		t.Errorf("left-justified width: %q", got)
	}
}

func TestEmptyPrintsEmpty(t *testing.T) {
	var z Secret
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		if got := fmt.Sprintf(verb, z); got != EmptyPlaceholder {
			t.Errorf("%s on empty = %q, want %q", verb, got, EmptyPlaceholder)
		}
	}
}

type exported struct {
	Name  string
	Token Secret
	Ptr   *Secret
	List  []Secret
	Map   map[string]Secret
}

type unexported struct {
	name  string
	token Secret
	ptr   *Secret
	list  []Secret
	m     map[string]Secret
	inner struct{ s Secret }
}

func TestNestedInStructHides(t *testing.T) {
	s := New(value)
	e := exported{Name: "n", Token: s, Ptr: &s, List: []Secret{s}, Map: map[string]Secret{"k": s}}
	u := unexported{name: "n", token: s, ptr: &s, list: []Secret{s}, m: map[string]Secret{"k": s}}
	u.inner.s = s
	for _, verb := range verbs {
		for _, arg := range []any{e, &e, u, &u, []any{e, u}, map[string]any{"e": e, "u": u}} {
			out := fmt.Sprintf(verb, arg)
			if leaks(out) {
				t.Errorf("%s on %T leaks: %s", verb, arg, out)
			}
		}
	}
	if out := fmt.Sprintf("%+v", e); !strings.Contains(out, "Token:<secret>") {
		t.Errorf("%%+v on exported field: %s", out)
	}
	if out := fmt.Sprintf("%#v", e); !strings.Contains(out, "Token:<secret>") {
		t.Errorf("%%#v on exported field: %s", out)
	}
}

func TestMarshallersHide(t *testing.T) {
	s := New(value)
	e := exported{Name: "n", Token: s, Ptr: &s, List: []Secret{s}, Map: map[string]Secret{"k": s}}

	j, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(j, &back); err != nil {
		t.Fatal(err)
	}
	if leaks(string(j)) || back["Token"] != Placeholder || back["Ptr"] != Placeholder {
		t.Errorf("json: %s", j)
	}
	var one string
	if j, _ := json.Marshal(s); json.Unmarshal(j, &one) != nil || one != Placeholder {
		t.Errorf("json of Secret: %s", j)
	}
	if j, _ := json.Marshal(map[Secret]int{s: 1}); leaks(string(j)) {
		t.Errorf("json map key: %s", j)
	}

	y, err := yaml.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if leaks(string(y)) || !strings.Contains(string(y), "token: <secret>") {
		t.Errorf("yaml: %s", y)
	}

	txt, err := s.MarshalText()
	if err != nil || string(txt) != Placeholder {
		t.Errorf("MarshalText = %q, %v", txt, err)
	}
	type holder struct{ Token Secret }
	x, err := xml.Marshal(holder{s})
	if err != nil {
		t.Fatal(err)
	}
	if leaks(string(x)) {
		t.Errorf("xml: %s", x)
	}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		slog.New(h).Info("login", "token", s, "cfg", e)
	}
	if leaks(buf.String()) {
		t.Errorf("slog: %s", buf.String())
	}

	var z Secret
	if j, _ := json.Marshal(z); string(j) != `""` {
		t.Errorf("json of empty: %s", j)
	}
	if y, _ := yaml.Marshal(struct {
		T Secret `yaml:"t,omitempty"`
	}{}); strings.TrimSpace(string(y)) != "{}" {
		t.Errorf("yaml omitempty of empty: %q", y)
	}
}

func TestUnmarshalYAML(t *testing.T) {
	var c struct {
		A Secret `yaml:"a"`
		B Secret `yaml:"b"`
		C Secret `yaml:"c"`
		D Secret `yaml:"d"`
	}
	err := yaml.Unmarshal([]byte("a: "+value+"\nb: 0123\nc: 'true'\nd:\n"), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.A.Reveal() != value || c.B.Reveal() != "0123" || c.C.Reveal() != "true" || !c.D.IsZero() {
		t.Fatalf("got %q %q %q %q", c.A.Reveal(), c.B.Reveal(), c.C.Reveal(), c.D.Reveal())
	}

	var m struct{ A Secret }
	err = yaml.Unmarshal([]byte("a: ["+value+"]\n"), &m)
	if err == nil {
		t.Fatal("a list was accepted as a secret")
	}
	if leaks(err.Error()) {
		t.Errorf("error leaks: %v", err)
	}
	err = yaml.Unmarshal([]byte("a: {x: "+value+"}\n"), &m)
	if err == nil || leaks(err.Error()) {
		t.Errorf("mapping: %v", err)
	}
}
