package servicenow

import (
	"regexp"
	"strings"
	"unicode"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	maxFieldLen   = 1000 // per note line: a 10 KB "image name" is cut, not echoed
	maxCloseNotes = 4000 // close_notes is a 4,000-character string field
	maxNameLen    = 100  // per field name: names may quote requester text ("Image 2 (…)")
)

// codeTag matches ServiceNow's journal markup: text between [code] and [/code]
// is rendered as HTML in the activity stream, so user text must never carry it.
var codeTag = regexp.MustCompile(`(?i)\[\s*/?\s*code\s*\]`)

// renderNote renders a report as a work note: the marker line, then one
// "Name: value" line per field. Every part is cleaned: values and names (a
// name may quote a requested image) hold requester text, and the marker holds
// the RITM number as the instance reports it; so nothing can inject HTML
// through [code] tags or forge extra lines. signature cleans the same way, so
// it matches what was written.
func renderNote(r isync.Report) string {
	var b strings.Builder
	b.WriteString(clean(r.Marker, maxFieldLen))
	for _, f := range r.Fields {
		b.WriteString("\n")
		b.WriteString(clean(f.Name, maxNameLen))
		b.WriteString(": ")
		b.WriteString(clean(f.Value, maxFieldLen))
	}
	return b.String()
}

// clean makes text safe for one line of a work note or close_notes: valid UTF-8,
// control and format characters shown as U+FFFD (CR/LF become spaces), no [code] markup, at most max
// runes (cut with an ellipsis).
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			// Shown, not silently dropped: "py\x00thon" must not read as
			// "python", and bidi overrides must not reorder the line.
			return '\uFFFD'
		}
		return r
	}, s)
	s = codeTag.ReplaceAllStringFunc(s, func(m string) string {
		// "[code]" → "(code)": readable, inert.
		return "(" + strings.Trim(m, "[]") + ")"
	})
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return s
}
