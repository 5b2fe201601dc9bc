package jira

import (
	"strings"
	"unicode"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

const (
	maxFieldLen = 1000  // per comment line: a 40 KB justification is cut, not echoed
	maxComment  = 32000 // Jira's limit is 32,767 characters; keep headroom
)

// wikiSpecial are the characters, besides the backslash, that open Jira wiki
// markup: macros ({html}, {code}), links and mentions ([x|javascript:…],
// [~user]), images (!x!), tables (|), text effects (* _ + ^ ~ ??) and
// numbered lists (#).
const wikiSpecial = `{}[]!|*_+^~?#`

// backslashRef is how escapeWiki writes a backslash (see there).
const backslashRef = "&#92;"

// escapeWiki makes text render literally in Jira wiki markup, on one line:
// markup characters are backslash-escaped, CR/LF and tabs become spaces,
// control and format characters show as U+FFFD, at most max runes remain.
//
// A backslash itself cannot be escaped with a backslash: Jira renders "\\" as
// a forced line break, so "a\\b" would split the line (and the `\u0440` that
// a rejection reason quotes would read as a line break and "u0440"). It is
// written as the character reference "&#92;", which Jira renders as a plain
// backslash; the output therefore never holds two backslashes in a row, and
// every backslash in it escapes the markup character that follows.
func escapeWiki(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			b.WriteRune('\uFFFD') // shown, not dropped: bidi overrides must not reorder the line
		case r == '\\':
			b.WriteString(backslashRef)
		case strings.ContainsRune(wikiSpecial, r):
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// renderComment renders a report as a Jira comment (wiki markup, v2 API): the
// escaped marker line, then one "*Name:* value" line per field.
func renderComment(r isync.Report) string {
	var b strings.Builder
	b.WriteString(escapeWiki(r.Marker, maxFieldLen))
	for _, f := range r.Fields {
		line := "\n*" + escapeWiki(f.Name, 100) + ":* " + escapeWiki(f.Value, maxFieldLen)
		if b.Len()+len(line) > maxComment {
			b.WriteString("\n(further lines cut: Jira's comment length limit)")
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

// signature is what identifies a comment as this report's, across restarts:
// the marker line and the Result (and, when blocked, Cause) lines, which do not
// depend on the time of writing.
func signature(r isync.Report) []string {
	sig := []string{escapeWiki(r.Marker, maxFieldLen)}
	for _, f := range r.Fields {
		if f.Name == "Result" || f.Name == "Cause" {
			sig = append(sig, "*"+escapeWiki(f.Name, 100)+":* "+escapeWiki(f.Value, maxFieldLen))
		}
	}
	return sig
}
