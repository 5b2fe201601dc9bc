package secret

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	const pass = `p@ss "w<o>rd" & more`
	pair := base64.StdEncoding.EncodeToString([]byte("svc:" + pass))
	for _, text := range []string{
		"refused " + pass,
		`{"error":{"message":"refused p@ss \"w\u003co\u003erd\" \u0026 more"}}`,
		`{"error":{"message":"refused p@ss \"w<o>rd\" & more"}}`,
		"grant_type=password&password=" + url.QueryEscape(pass),
		"Authorization: Basic " + pair,
	} {
		got := string(Scrub([]byte(text), pass, "svc:"+pass))
		if strings.Contains(got, "w<o>rd") || strings.Contains(got, `w\u003co`) || strings.Contains(got, "w%3Co") || strings.Contains(got, pair) {
			t.Errorf("Scrub(%q) = %q", text, got)
		}
		if !strings.Contains(got, Placeholder) {
			t.Errorf("Scrub(%q) = %q: no placeholder", text, got)
		}
	}
	if got := string(Scrub([]byte("abc"), "", "ab")); got != "abc" {
		t.Errorf("short values scrubbed: %q", got)
	}
}
