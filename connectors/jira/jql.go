package jira

import "strings"

// quoteJQL returns v as a JQL string literal: double-quoted, with `\` and `"`
// escaped, so a value can never end the literal, and reserved words (IN, AND,
// DO) or characters such as @ and . are taken as text.
func quoteJQL(v string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range v {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// splitOrderBy splits a JQL query into its restriction and its ORDER BY
// clause (with the keyword), ignoring "order by" inside quoted strings.
func splitOrderBy(jql string) (where, orderBy string) {
	inQuote := rune(0)
	escaped := false
	lower := strings.ToLower(jql)
	for i, r := range jql {
		switch {
		case escaped:
			escaped = false
		case r == '\\':
			escaped = true
		case inQuote != 0:
			if r == inQuote {
				inQuote = 0
			}
		case r == '"' || r == '\'':
			inQuote = r
		case strings.HasPrefix(lower[i:], "order by") && (i == 0 || lower[i-1] == ' ' || lower[i-1] == ')'):
			return strings.TrimSpace(jql[:i]), strings.TrimSpace(jql[i:])
		}
	}
	return strings.TrimSpace(jql), ""
}
