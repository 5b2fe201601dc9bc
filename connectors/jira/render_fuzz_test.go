package jira

import (
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	isync "github.com/chainguard-dev/image-request-bridge/internal/sync"
)

// unescapedWiki returns the byte index of the first character of s that Jira
// would read as markup: a markup character without a backslash before it, or
// a backslash that escapes no markup character (two in a row are a line
// break). -1 when every markup character is escaped.
func unescapedWiki(s string) int {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case strings.HasPrefix(s[i:], backslashRef):
			i += len(backslashRef) - 1 // how a backslash is written
		case c == '\\':
			if i+1 >= len(s) || !strings.ContainsRune(wikiSpecial, rune(s[i+1])) {
				return i
			}
			i++
		case strings.ContainsRune(wikiSpecial, rune(c)):
			return i
		}
	}
	return -1
}

// unescapeWiki reads escapeWiki's output back as the text Jira shows.
func unescapeWiki(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return strings.ReplaceAll(b.String(), backslashRef, `\`)
}

// wikiText is what escapeWiki must show for s: valid UTF-8, at most max
// runes, one line, control and format characters as U+FFFD.
func wikiText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if r := []rune(s); len(r) > max {
		s = string(r[:max-1]) + "…"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\t':
			return ' '
		case unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029':
			return '\uFFFD'
		}
		return r
	}, s)
}

func checkWikiLine(t *testing.T, in, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("escapeWiki(%q) = %q: not valid UTF-8", in, out)
	}
	for _, r := range out {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			t.Fatalf("escapeWiki(%q) = %q: carries %U", in, out, r)
		}
	}
	if i := unescapedWiki(out); i >= 0 {
		t.Fatalf("escapeWiki(%q) = %q: unescaped markup at byte %d", in, out, i)
	}
}

// FuzzEscapeWiki: whatever the input, the output is one line of visible
// text in which every markup character is escaped, no backslash pair (a
// line break) appears, and Jira shows exactly the (cut, cleaned) input.
func FuzzEscapeWiki(f *testing.F) {
	for _, s := range []string{
		"", "python", "{html}<script>alert(1)</script>{html}", "[x|javascript:alert(1)]", "[~admin]", `\`, `\\`, `\{`,
		`a\\b`, "\\u0440", "line\r\nbreak", "\u202eabc", "\xff\xfe", "&#92;", "!x.png! ||t|| *b* _i_ +u+ ^s^ ~s~ ??c?? #n {{m}}",
	} {
		f.Add(s, 1000)
	}
	f.Add("abcdef", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = 2 + abs(max)%2000
		out := escapeWiki(s, max)
		checkWikiLine(t, s, out)
		if got, want := unescapeWiki(out), strings.ReplaceAll(wikiText(s, max), backslashRef, `\`); got != want {
			t.Fatalf("escapeWiki(%q, %d) = %q shows %q, want %q", s, max, out, got, want)
		}
		if n := utf8.RuneCountInString(unescapeWiki(out)); n > max {
			t.Fatalf("escapeWiki(%q, %d) shows %d characters", s, max, n)
		}
	})
}

// FuzzRenderComment: a comment is the escaped marker and one "*Name:* value"
// line per field, within Jira's limit, and it carries its own signature, so a
// comment the bridge wrote is always recognised (no second comment).
func FuzzRenderComment(f *testing.F) {
	f.Add("[image-request-bridge] IMG-1 request ibr-0123456789abcdef", "Justification", "{html}x{html}", 1)
	f.Add("[x|javascript:1]", "Na\nme", `\\[~a]`, 3)
	f.Add("m", "Reason", strings.Repeat("{", 1200), 40)
	f.Fuzz(func(t *testing.T, marker, name, value string, n int) {
		n = 1 + abs(n)%64
		r := isync.Report{Outcome: isync.OutcomeRejected, Marker: marker}
		r.Fields = append(r.Fields, isync.Field{Name: "Result", Value: "Rejected: " + value})
		for i := 0; i < n; i++ {
			r.Fields = append(r.Fields, isync.Field{Name: name, Value: value})
		}
		body := renderComment(r)
		if len(body) > jiraCommentLimit {
			t.Fatalf("comment of %d bytes", len(body))
		}
		lines := strings.Split(body, "\n")
		checkWikiLine(t, marker, lines[0])
		for _, l := range lines[1:] {
			if l == "(further lines cut: Jira's comment length limit)" {
				continue
			}
			rest, ok := strings.CutPrefix(l, "*")
			fname, fvalue, ok2 := strings.Cut(rest, ":* ")
			if !ok || !ok2 {
				t.Fatalf("line %q is not a field line", l)
			}
			checkWikiLine(t, name, fname)
			checkWikiLine(t, value, fvalue)
		}
		if len(lines) > 1+len(r.Fields)+1 {
			t.Fatalf("%d lines for %d fields", len(lines), len(r.Fields))
		}
		if !hasAll(body, signature(r)) {
			t.Fatalf("the comment does not carry its signature %q:\n%s", signature(r), body)
		}
	})
}

// jiraCommentLimit is Jira's default comment length limit.
const jiraCommentLimit = 32767

// jqlControl reports the characters Jira's JQL grammar refuses raw inside a
// quoted string (CONTROLCHARS in Jql.g): C0 and C1 controls but \n and \r,
// and the non-characters U+FDD0..U+FDEF, U+FFFE and U+FFFF.
func jqlControl(r rune) bool {
	return (r <= 0x1f && r != '\n' && r != '\r') || (r >= 0x7f && r <= 0x9f) ||
		(r >= 0xfdd0 && r <= 0xfdef) || r == 0xfffe || r == 0xffff
}

// lexJQLString reads the JQL string literal at the start of q, with the
// escapes Jira takes (\" \' \\ \n \r \t \uXXXX and "\ "), and returns its
// value and the bytes it spans.
func lexJQLString(q string) (string, int, bool) {
	if q == "" || (q[0] != '"' && q[0] != '\'') {
		return "", 0, false
	}
	quote := rune(q[0])
	var b strings.Builder
	rs := []rune(q)
	n := 1
	for i := 1; i < len(rs); i++ {
		r := rs[i]
		n += utf8.RuneLen(r)
		switch {
		case r == quote:
			return b.String(), n, true
		case r == '\\':
			if i+1 >= len(rs) {
				return "", 0, false
			}
			i++
			e := rs[i]
			n += utf8.RuneLen(e)
			switch e {
			case '"', '\'', '\\', ' ':
				b.WriteRune(e)
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				if i+4 >= len(rs) {
					return "", 0, false
				}
				v, err := strconv.ParseUint(string(rs[i+1:i+5]), 16, 32)
				if err != nil {
					return "", 0, false
				}
				b.WriteRune(rune(v))
				n += 4
				i += 4
			default:
				return "", 0, false
			}
		case jqlControl(r):
			return "", 0, false
		default:
			b.WriteRune(r)
		}
	}
	return "", 0, false
}

// FuzzQuoteJQL: quoteJQL's output is always exactly one JQL string literal,
// free of characters Jira refuses, whose value is the input; placed in a
// query, it never ends the literal nor reads as ORDER BY.
func FuzzQuoteJQL(f *testing.F) {
	for _, s := range []string{"", "IMG-1", `"`, `\`, `\"`, `" OR project = OPS OR key = "`, "a\nb\r\tc", "\x00\x1f\x7f\u0085",
		"\ufdd0\ufffe\uffff", "\u2028", "order by key", "\" ORDER BY key --", "İK\u212a", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		q := quoteJQL(v)
		got, n, ok := lexJQLString(q)
		if !ok {
			t.Fatalf("quoteJQL(%q) = %q is not a JQL string literal", v, q)
		}
		if n != len(q) {
			t.Fatalf("quoteJQL(%q) = %q: the literal ends at byte %d of %d", v, q, n, len(q))
		}
		if want := string([]rune(v)); got != want { // each invalid byte reads as U+FFFD
			t.Fatalf("quoteJQL(%q) = %q reads back as %q", v, q, got)
		}
		jql := "project = IMG AND summary ~ " + q
		if where, order := splitOrderBy(jql + " ORDER BY key"); where != jql || order != "ORDER BY key" {
			t.Fatalf("splitOrderBy(%q) = %q, %q", jql+" ORDER BY key", where, order)
		}
		if where, order := splitOrderBy(jql); where != strings.TrimSpace(jql) || order != "" {
			t.Fatalf("splitOrderBy(%q) = %q, %q", jql, where, order)
		}
	})
}

// FuzzSplitOrderBy: splitting never panics, loses nothing, and what it
// calls the ORDER BY clause starts with those words.
func FuzzSplitOrderBy(f *testing.F) {
	for _, s := range []string{"project = IMG AND status = Approved ORDER BY key", `summary ~ "order by" order by key`,
		"project = IMG", "ORDER BY created", "(status = Approved)ORDER BY key", "project = IMG ORDER\n BY key", "\u212a\u212a\u212a order by x",
		"\xff\xff order by x", "İİİİİİ ORDER BY key", `summary ~ "\" ORDER BY key" AND x = 1`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, jql string) {
		where, order := splitOrderBy(jql)
		if order == "" {
			if where != strings.TrimSpace(jql) {
				t.Fatalf("splitOrderBy(%q) = %q without an ORDER BY", jql, where)
			}
			return
		}
		if !strings.Contains(jql, where) || !strings.HasSuffix(strings.TrimSpace(jql), order) {
			t.Fatalf("splitOrderBy(%q) = %q, %q: not parts of the query", jql, where, order)
		}
		words := strings.Fields(strings.ToLower(order))
		if len(words) < 2 || words[0] != "order" || !strings.HasPrefix(words[1], "by") {
			t.Fatalf("splitOrderBy(%q): ORDER BY clause %q", jql, order)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n {
			return 0
		}
		return -n
	}
	return n
}
