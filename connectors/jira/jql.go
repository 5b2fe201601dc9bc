package jira

import (
	"fmt"
	"strings"
	"unicode"
)

// quoteJQL returns v as a JQL string literal: double-quoted, with `\` and `"`
// escaped, so a value can never end the literal, and reserved words (IN, AND,
// DO) or characters such as @ and . are taken as text. Characters Jira's
// grammar refuses inside a literal (control characters, and the
// non-characters U+FDD0..U+FDEF, U+FFFE, U+FFFF) are written as \uXXXX
// escapes; invalid UTF-8 reads as U+FFFD.
func quoteJQL(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case unicode.IsControl(r) || (r >= 0xfdd0 && r <= 0xfdef) || r == 0xfffe || r == 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// splitOrderBy splits a JQL query into its restriction and its ORDER BY
// clause (with the keyword), ignoring "order by" inside quoted strings. ORDER
// and BY may be separated by any white space (a query written over several
// lines); the comparison is on ASCII bytes, so a query holding characters
// whose lower case is longer or shorter (K, İ, invalid UTF-8) splits where it
// should.
func splitOrderBy(jql string) (where, orderBy string) {
	inQuote := byte(0)
	escaped := false
	for i := 0; i < len(jql); i++ {
		c := jql[i]
		switch {
		case escaped:
			escaped = false
		case c == '\\':
			escaped = true
		case inQuote != 0:
			if c == inQuote {
				inQuote = 0
			}
		case c == '"' || c == '\'':
			inQuote = c
		case (i == 0 || isJQLSpace(jql[i-1]) || jql[i-1] == ')') && orderByAt(jql, i):
			return strings.TrimSpace(jql[:i]), strings.TrimSpace(jql[i:])
		}
	}
	return strings.TrimSpace(jql), ""
}

// orderByAt reports whether jql holds the keywords ORDER BY at byte i,
// case-insensitively, followed by white space or the end of the query.
func orderByAt(jql string, i int) bool {
	rest, ok := cutWordFold(jql[i:], "order")
	if !ok || rest == "" || !isJQLSpace(rest[0]) {
		return false
	}
	rest, ok = cutWordFold(strings.TrimLeft(rest, " \t\r\n\f\v"), "by")
	return ok && (rest == "" || isJQLSpace(rest[0]))
}

// cutWordFold removes the ASCII word w (lower case) from the start of s,
// comparing ASCII letters case-insensitively.
func cutWordFold(s, w string) (string, bool) {
	if len(s) < len(w) {
		return s, false
	}
	for k := 0; k < len(w); k++ {
		if c := s[k]; c != w[k] && c+('a'-'A') != w[k] {
			return s, false
		}
	}
	return s[len(w):], true
}

func isJQLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}
