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

// renderComment renders the requester's entry in the RITM's "comments"
// journal (Additional comments, customer visible; work notes are not): a
// line saying what happened and what to do, the pull reference when there
// is one, and last the marker, by which a retried write-back finds it. The
// audit detail (cause, tier, approver, instance) stays in the work note.
// Every part is cleaned like the note's. "" means no comment.
func renderComment(r isync.Report) string {
	field := func(name string) string {
		for _, f := range r.Fields {
			if f.Name == name {
				return f.Value
			}
		}
		return ""
	}
	var lines []string
	switch r.Outcome {
	case isync.OutcomeProvisioned:
		if ref := field("Pull reference"); ref != "" {
			lines = append(lines, "Your image is ready. Pull reference: "+ref)
			break
		}
		// Several images: the summary line, then one line per image.
		lines = append(lines, "Your request is done. "+field("Result"))
		for _, f := range r.Fields {
			if strings.HasPrefix(f.Name, "Image ") {
				lines = append(lines, f.Name+": "+f.Value)
			}
		}
	case isync.OutcomeSyncing:
		lines = append(lines, "Your image is being synced into the registry; this request is closed once it can be pulled. Pull reference: "+field("Pull reference"))
	case isync.OutcomeRejected:
		lines = append(lines, "Your request could not be fulfilled: "+field("Reason"))
		if what := field("What to do"); what != "" {
			lines = append(lines, "What to do: "+what)
		}
	case isync.OutcomeBlocked:
		// The same words whatever the cause: one such comment per request,
		// however often the cause changes.
		lines = append(lines, "Your request is delayed: the image cannot be provisioned yet. It is retried automatically and this request is updated once it is done; nothing is needed from you.")
	default:
		return ""
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(clean(l, maxFieldLen))
		b.WriteString("\n")
	}
	b.WriteString(clean(r.Marker, maxFieldLen))
	return b.String()
}

// commentSignature identifies a requester comment across attempts: its
// first line and its marker line.
func commentSignature(comment string) []string {
	first, _, _ := strings.Cut(comment, "\n")
	last := comment[strings.LastIndex(comment, "\n")+1:]
	return []string{first, last}
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
