package jira

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// This file implements the subset of JQL the fake understands:
//
//	query   := [or] [ORDER BY field [ASC|DESC] {, field [ASC|DESC]}]
//	or      := and {(OR | "||" | "|") and}
//	and     := not {(AND | "&&" | "&") not}
//	not     := (NOT | "!") not | "(" or ")" | clause
//	clause  := field op value | field (IN | NOT IN) "(" value {, value} ")"
//	op      := = | != | ~ | !~ | < | <= | > | >= | IS | IS NOT
//	field   := word | "quoted name" | cf[NNNNN]
//	value   := word | "quoted" | 'quoted' | EMPTY | NULL | function()
//
// Keywords and field names are case-insensitive. Quoted strings take the
// escapes \" \' \\ \n \r \t \uXXXX and "\ ". Unquoted reserved words (IN,
// AND, ORDER, ...) and reserved characters (+ . ; ? * / % ^ $ # @ [ ]) are
// syntax errors, as on a real instance. Functions: currentUser() and now().

// jqlError is a JQL error, answered as 400 {"errorMessages":[msg]}.
type jqlError string

func (e jqlError) Error() string { return string(e) }

// syntaxError builds a parse error with Jira's prefix and position.
func syntaxError(t token, format string, args ...any) error {
	msg := "Error in the JQL Query: " + fmt.Sprintf(format, args...)
	if t.kind != tEOF {
		msg += fmt.Sprintf(" (line %d, character %d)", t.line, t.col)
	}
	return jqlError(msg)
}

type tokKind int

const (
	tEOF tokKind = iota
	tWord
	tString
	tCF
	tLParen
	tRParen
	tComma
	tOp
	tAnd
	tOr
	tNot
)

// token is a lexical token; text is the unescaped value (the digits of a
// cf[NNNNN]), raw the text as written.
type token struct {
	kind      tokKind
	text, raw string
	line, col int
}

const (
	reservedChars = "+.;?*/%^$#@[]"
	wordStop      = "()=,!<>~&|\"'"
)

// reservedWords are the words JQL reserves; they must be quoted to be used
// as values or field names.
var reservedWords = map[string]bool{}

func init() {
	for w := range strings.FieldsSeq(`a an abort access add after alias all alter and any are as asc audit avg
		before begin between boolean break by byte catch cf char character check checkpoint collate collation
		column commit connect continue count create current date decimal declare decrement default defaults
		define delete delimiter desc difference distinct divide do double drop else empty encoding end equals
		escape exclusive exec execute exists explain false fetch file field first float for from function go
		goto grant greater group having identified if immediate in increment index initial inner inout input
		insert int integer intersect intersection into is isempty isnull join last left less like limit lock
		long max min minus mode modify modulo more multiply next noaudit not notin nowait null number object
		of on option or order outer output power previous prior privileges public raise raw remainder rename
		resource return returns revoke right row rowid rownum rows select session set share size sqrt start
		strict string subtract sum synonym table then to trans transaction trigger true uid union unique update
		user validate values view when whenever where while with`) {
		reservedWords[w] = true
	}
}

// lexJQL splits a query into tokens.
func lexJQL(q string) ([]token, error) {
	rs := []rune(q)
	var toks []token
	i, line, col := 0, 1, 1
	advance := func(n int) {
		for ; n > 0 && i < len(rs); n-- {
			if rs[i] == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i++
		}
	}
	// escape reads the escape sequence at rs[i] (a backslash) into b.
	escape := func(b *strings.Builder) error {
		at := token{kind: tWord, line: line, col: col}
		if i+1 >= len(rs) {
			return syntaxError(at, "The escape sequence '\\' is illegal.")
		}
		switch e := rs[i+1]; e {
		case '"', '\'', '\\', ' ':
			b.WriteRune(e)
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			if i+6 > len(rs) {
				return syntaxError(at, "The escape sequence '%s' is illegal.", string(rs[i:]))
			}
			n, err := strconv.ParseUint(string(rs[i+2:i+6]), 16, 32)
			if err != nil {
				return syntaxError(at, "The escape sequence '%s' is illegal.", string(rs[i:i+6]))
			}
			b.WriteRune(rune(n))
			advance(6)
			return nil
		default:
			return syntaxError(at, "The escape sequence '\\%c' is illegal.", e)
		}
		advance(2)
		return nil
	}
	for i < len(rs) {
		c := rs[i]
		if unicode.IsSpace(c) {
			advance(1)
			continue
		}
		t := token{line: line, col: col}
		start := i
		switch {
		case c == '(' || c == ')' || c == ',':
			t.kind = map[rune]tokKind{'(': tLParen, ')': tRParen, ',': tComma}[c]
			advance(1)
		case c == '=' || c == '~':
			t.kind = tOp
			advance(1)
		case c == '!' || c == '<' || c == '>':
			t.kind = tOp
			advance(1)
			if i < len(rs) && (rs[i] == '=' || (c == '!' && rs[i] == '~')) {
				advance(1)
			} else if c == '!' {
				t.kind = tNot
			}
		case c == '&' || c == '|':
			t.kind = tAnd
			if c == '|' {
				t.kind = tOr
			}
			advance(1)
			if i < len(rs) && rs[i] == c {
				advance(1)
			}
		case c == '"' || c == '\'':
			t.kind = tString
			advance(1)
			var b strings.Builder
			for {
				if i >= len(rs) {
					return nil, syntaxError(t, "The quoted string '%s' has not been completed.", b.String())
				}
				if rs[i] == c {
					advance(1)
					break
				}
				if rs[i] == '\\' {
					if err := escape(&b); err != nil {
						return nil, err
					}
					continue
				}
				b.WriteRune(rs[i])
				advance(1)
			}
			t.text = b.String()
		default:
			t.kind = tWord
			var b strings.Builder
			for i < len(rs) && !unicode.IsSpace(rs[i]) && !strings.ContainsRune(wordStop, rs[i]) {
				ch := rs[i]
				if ch == '[' && i == start+2 && strings.EqualFold(b.String(), "cf") {
					j := i + 1
					for j < len(rs) && rs[j] >= '0' && rs[j] <= '9' {
						j++
					}
					if j > i+1 && j < len(rs) && rs[j] == ']' {
						t.kind, t.text = tCF, string(rs[i+1:j])
						advance(j + 1 - i)
						break
					}
				}
				if ch == '\\' {
					if err := escape(&b); err != nil {
						return nil, err
					}
					continue
				}
				if strings.ContainsRune(reservedChars, ch) {
					return nil, syntaxError(token{kind: tWord, line: line, col: col},
						"The character '%c' is a reserved JQL character. You must enclose it in a string or use the escape '\\u%04x' instead.", ch, ch)
				}
				b.WriteRune(ch)
				advance(1)
			}
			if t.kind == tWord {
				t.text = b.String()
			}
		}
		t.raw = string(rs[start:i])
		if t.kind == tOp || t.kind == tNot {
			t.text = t.raw
		}
		toks = append(toks, t)
	}
	return append(toks, token{kind: tEOF, line: line, col: col}), nil
}

// jqlQuery is a parsed query; where is nil for a query without restriction.
type jqlQuery struct {
	where jqlExpr
	order []jqlOrder
}

type jqlExpr interface{}

type (
	jqlAnd    struct{ l, r jqlExpr }
	jqlOr     struct{ l, r jqlExpr }
	jqlNot    struct{ x jqlExpr }
	jqlClause struct {
		field  fieldRef
		op     string // lower case: =, !=, ~, !~, <, <=, >, >=, in, not in, is, is not
		values []jqlValue
	}
)

// fieldRef is a field as written: a name, or cf[NNNNN] (num set).
type fieldRef struct {
	name, num string
	tok       token
}

type jqlValue struct {
	text  string
	empty bool   // EMPTY or NULL
	fn    string // function name, for function()
	tok   token
}

type jqlOrder struct {
	field fieldRef
	desc  bool
}

type jqlParser struct {
	toks []token
	pos  int
}

func (p *jqlParser) peek() token { return p.toks[p.pos] }

func (p *jqlParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

// isWord reports whether t is the unquoted keyword w.
func isWord(t token, w string) bool { return t.kind == tWord && strings.EqualFold(t.raw, w) }

func reservedError(t token) error {
	return syntaxError(t, "'%s' is a reserved JQL word. You must surround it in quotation marks to use it in a query.", t.raw)
}

const validOperators = "The valid operators are '=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'."

// parseJQL parses a query.
func parseJQL(q string) (*jqlQuery, error) {
	toks, err := lexJQL(q)
	if err != nil {
		return nil, err
	}
	p := &jqlParser{toks: toks}
	out := &jqlQuery{}
	if t := p.peek(); t.kind != tEOF && !isWord(t, "order") {
		if out.where, err = p.parseOr(); err != nil {
			return nil, err
		}
	}
	if isWord(p.peek(), "order") {
		p.next()
		if t := p.next(); !isWord(t, "by") {
			if t.kind == tEOF {
				return nil, syntaxError(t, "Expecting 'BY' before the end of the query.")
			}
			return nil, syntaxError(t, "Expecting 'BY' but got '%s'.", t.raw)
		}
		for {
			f, err := p.parseField()
			if err != nil {
				return nil, err
			}
			o := jqlOrder{field: f}
			if t := p.peek(); isWord(t, "asc") || isWord(t, "desc") {
				p.next()
				o.desc = isWord(t, "desc")
			}
			out.order = append(out.order, o)
			if p.peek().kind != tComma {
				break
			}
			p.next()
		}
		if t := p.peek(); t.kind != tEOF {
			return nil, syntaxError(t, "Expecting either a ',' or the end of the query but got '%s'.", t.raw)
		}
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, syntaxError(t, "Expecting either 'OR' or 'AND' but got '%s'.", t.raw)
	}
	return out, nil
}

func (p *jqlParser) parseOr() (jqlExpr, error) {
	l, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tOr || isWord(t, "or"); t = p.peek() {
		p.next()
		r, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		l = jqlOr{l, r}
	}
	return l, nil
}

func (p *jqlParser) parseAnd() (jqlExpr, error) {
	l, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tAnd || isWord(t, "and"); t = p.peek() {
		p.next()
		r, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		l = jqlAnd{l, r}
	}
	return l, nil
}

func (p *jqlParser) parseNot() (jqlExpr, error) {
	t := p.peek()
	switch {
	case t.kind == tNot || isWord(t, "not"):
		p.next()
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return jqlNot{x}, nil
	case t.kind == tLParen:
		p.next()
		x, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if t := p.next(); t.kind != tRParen {
			if t.kind == tEOF {
				return nil, syntaxError(t, "Expecting ')' before the end of the query.")
			}
			return nil, syntaxError(t, "Expecting ')' but got '%s'.", t.raw)
		}
		return x, nil
	}
	return p.parseClause()
}

func (p *jqlParser) parseField() (fieldRef, error) {
	t := p.next()
	switch t.kind {
	case tCF:
		return fieldRef{name: t.raw, num: t.text, tok: t}, nil
	case tString:
		return fieldRef{name: t.text, tok: t}, nil
	case tWord:
		if reservedWords[strings.ToLower(t.raw)] {
			return fieldRef{}, reservedError(t)
		}
		return fieldRef{name: t.text, tok: t}, nil
	case tEOF:
		return fieldRef{}, syntaxError(t, "Expecting a field name at the end of the query.")
	}
	return fieldRef{}, syntaxError(t, "Expecting a field name but got '%s'. You must surround '%s' in quotation marks to use it as a field name.", t.raw, t.raw)
}

func (p *jqlParser) parseClause() (jqlExpr, error) {
	f, err := p.parseField()
	if err != nil {
		return nil, err
	}
	c := jqlClause{field: f}
	t := p.next()
	switch {
	case t.kind == tOp:
		c.op = t.text
	case isWord(t, "in"):
		c.op = "in"
	case isWord(t, "not") && isWord(p.peek(), "in"):
		p.next()
		c.op = "not in"
	case isWord(t, "is"):
		c.op = "is"
		if isWord(p.peek(), "not") {
			p.next()
			c.op = "is not"
		}
	case t.kind == tEOF:
		return nil, syntaxError(t, "Expecting operator before the end of the query. "+validOperators)
	default:
		return nil, syntaxError(t, "Expecting operator but got '%s'. "+validOperators, t.raw)
	}
	if c.op == "in" || c.op == "not in" {
		if p.peek().kind != tLParen {
			v, err := p.parseValue()
			if err != nil {
				return nil, err
			}
			if v.fn == "" {
				return nil, syntaxError(v.tok, "Expecting '(' but got '%s'.", v.tok.raw)
			}
			c.values = []jqlValue{v}
			return c, nil
		}
		p.next()
		for {
			v, err := p.parseValue()
			if err != nil {
				return nil, err
			}
			c.values = append(c.values, v)
			t := p.next()
			if t.kind == tRParen {
				break
			}
			if t.kind == tEOF {
				return nil, syntaxError(t, "Expecting ')' before the end of the query.")
			}
			if t.kind != tComma {
				return nil, syntaxError(t, "Expecting ')' but got '%s'.", t.raw)
			}
		}
		return c, nil
	}
	v, err := p.parseValue()
	if err != nil {
		return nil, err
	}
	if (c.op == "is" || c.op == "is not") && !v.empty {
		return nil, syntaxError(v.tok, "Expecting 'EMPTY' or 'NULL' after '%s' but got '%s'.", strings.ToUpper(c.op), v.tok.raw)
	}
	c.values = []jqlValue{v}
	return c, nil
}

func (p *jqlParser) parseValue() (jqlValue, error) {
	t := p.next()
	switch t.kind {
	case tString:
		return jqlValue{text: t.text, tok: t}, nil
	case tWord:
		if p.peek().kind == tLParen {
			p.next()
			for depth := 1; depth > 0; {
				switch a := p.next(); a.kind {
				case tLParen:
					depth++
				case tRParen:
					depth--
				case tEOF:
					return jqlValue{}, syntaxError(a, "Expecting ')' before the end of the query.")
				}
			}
			return jqlValue{fn: t.text, tok: t}, nil
		}
		low := strings.ToLower(t.raw)
		if low == "empty" || low == "null" {
			return jqlValue{empty: true, tok: t}, nil
		}
		if reservedWords[low] {
			return jqlValue{}, reservedError(t)
		}
		return jqlValue{text: t.text, tok: t}, nil
	case tEOF:
		return jqlValue{}, syntaxError(t, "Expecting either a value, list or function before the end of the query.")
	}
	return jqlValue{}, syntaxError(t, "Expecting either a value, list or function but got '%s'. You must surround '%s' in quotation marks to use it as a value.", t.raw, t.raw)
}

// Field kinds for searching and sorting.
type jqlKind int

const (
	kProject jqlKind = iota
	kStatus
	kCategory
	kIssueType
	kKey
	kResolution
	kLabels
	kUser
	kText
	kSelect
	kDate
)

// jqlField is a resolved field.
type jqlField struct {
	kind   jqlKind
	name   string // as written, for messages
	id     string // system field id or customfield_NNNNN
	custom *customField
}

// operators each kind of field supports.
var kindOperators = map[jqlKind][]string{
	kProject:    {"=", "!=", "in", "not in", "is", "is not"},
	kStatus:     {"=", "!=", "in", "not in", "is", "is not"},
	kCategory:   {"=", "!=", "in", "not in", "is", "is not"},
	kIssueType:  {"=", "!=", "in", "not in", "is", "is not"},
	kKey:        {"=", "!=", "in", "not in", "<", "<=", ">", ">="},
	kResolution: {"=", "!=", "in", "not in", "is", "is not"},
	kLabels:     {"=", "!=", "in", "not in", "is", "is not"},
	kUser:       {"=", "!=", "in", "not in", "is", "is not"},
	kText:       {"~", "!~", "is", "is not"},
	kSelect:     {"=", "!=", "in", "not in", "is", "is not"},
	kDate:       {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"},
}

var systemClauses = map[string]jqlField{
	"project":        {kind: kProject, id: "project"},
	"status":         {kind: kStatus, id: "status"},
	"statuscategory": {kind: kCategory, id: "statusCategory"},
	"issuetype":      {kind: kIssueType, id: "issuetype"},
	"type":           {kind: kIssueType, id: "issuetype"},
	"key":            {kind: kKey, id: "issuekey"},
	"issuekey":       {kind: kKey, id: "issuekey"},
	"id":             {kind: kKey, id: "issuekey"},
	"issue":          {kind: kKey, id: "issuekey"},
	"resolution":     {kind: kResolution, id: "resolution"},
	"labels":         {kind: kLabels, id: "labels"},
	"reporter":       {kind: kUser, id: "reporter"},
	"assignee":       {kind: kUser, id: "assignee"},
	"summary":        {kind: kText, id: "summary"},
	"description":    {kind: kText, id: "description"},
	"comment":        {kind: kText, id: "comment"},
	"text":           {kind: kText, id: "text"},
	"created":        {kind: kDate, id: "created"},
	"createddate":    {kind: kDate, id: "created"},
	"updated":        {kind: kDate, id: "updated"},
	"updateddate":    {kind: kDate, id: "updated"},
	"resolutiondate": {kind: kDate, id: "resolutiondate"},
	"resolved":       {kind: kDate, id: "resolutiondate"},
}

// resolveFieldLocked finds the field a clause names.
func (s *Server) resolveFieldLocked(ref fieldRef) (*jqlField, error) {
	unknown := jqlError("Field '" + ref.name + "' does not exist or you do not have permission to view it.")
	custom := func(f *customField) *jqlField {
		k := kText
		if f.kind == kindSelect {
			k = kSelect
		}
		return &jqlField{kind: k, name: ref.name, id: f.id, custom: f}
	}
	if ref.num != "" {
		if f := s.customField("customfield_" + strings.TrimLeft(ref.num, "0")); f != nil {
			return custom(f), nil
		}
		return nil, unknown
	}
	low := strings.ToLower(ref.name)
	if f, ok := systemClauses[low]; ok {
		f.name = ref.name
		return &f, nil
	}
	if strings.HasPrefix(low, "customfield_") {
		if f := s.customField(low); f != nil {
			return custom(f), nil
		}
		return nil, unknown
	}
	for _, f := range s.fields {
		if strings.EqualFold(f.name, ref.name) {
			return custom(f), nil
		}
	}
	return nil, unknown
}

// issuePred reports whether an issue matches.
type issuePred func(*issueRecord) bool

// compileJQLLocked turns a parsed query into a predicate (nil for a query
// without restriction) and an ordering, validating fields, operators and
// values against the instance.
func (s *Server) compileJQLLocked(q *jqlQuery) (issuePred, func(a, b *issueRecord) int, error) {
	var pred issuePred
	if q.where != nil {
		var err error
		if pred, err = s.compileExprLocked(q.where); err != nil {
			return nil, nil, err
		}
	}
	order, err := s.compileOrderLocked(q.order)
	if err != nil {
		return nil, nil, err
	}
	return pred, order, nil
}

func (s *Server) compileExprLocked(e jqlExpr) (issuePred, error) {
	switch e := e.(type) {
	case jqlAnd:
		l, err := s.compileExprLocked(e.l)
		if err != nil {
			return nil, err
		}
		r, err := s.compileExprLocked(e.r)
		if err != nil {
			return nil, err
		}
		return func(rec *issueRecord) bool { return l(rec) && r(rec) }, nil
	case jqlOr:
		l, err := s.compileExprLocked(e.l)
		if err != nil {
			return nil, err
		}
		r, err := s.compileExprLocked(e.r)
		if err != nil {
			return nil, err
		}
		return func(rec *issueRecord) bool { return l(rec) || r(rec) }, nil
	case jqlNot:
		x, err := s.compileExprLocked(e.x)
		if err != nil {
			return nil, err
		}
		return func(rec *issueRecord) bool { return !x(rec) }, nil
	case jqlClause:
		return s.compileClauseLocked(e)
	}
	return nil, jqlError("unsupported JQL expression")
}

func (s *Server) compileClauseLocked(c jqlClause) (issuePred, error) {
	f, err := s.resolveFieldLocked(c.field)
	if err != nil {
		return nil, err
	}
	if f.kind == kDate {
		s.jqlClock = true // relative dates and now() move with the clock
	}
	if !slices.Contains(kindOperators[f.kind], c.op) {
		return nil, jqlError("The operator '" + c.op + "' is not supported by the '" + f.name + "' field.")
	}
	isEmpty := s.emptinessLocked(f)
	switch c.op {
	case "is":
		return isEmpty, nil
	case "is not":
		return func(rec *issueRecord) bool { return !isEmpty(rec) }, nil
	}
	var preds []issuePred
	hasEmpty := false
	for _, v := range c.values {
		if v.empty {
			hasEmpty = true
			continue
		}
		if v.fn != "" && f.kind != kDate && f.kind != kUser {
			return nil, s.functionError(v, f)
		}
		p, err := s.valuePredLocked(f, c.op, v)
		if err != nil {
			return nil, err
		}
		preds = append(preds, p)
	}
	anyMatch := func(rec *issueRecord) bool {
		for _, p := range preds {
			if p(rec) {
				return true
			}
		}
		return false
	}
	switch c.op {
	case "=", "in", "~":
		return func(rec *issueRecord) bool { return (hasEmpty && isEmpty(rec)) || anyMatch(rec) }, nil
	case "!=", "not in", "!~":
		// Jira never matches an issue whose field is empty with != or NOT IN.
		return func(rec *issueRecord) bool { return !isEmpty(rec) && !anyMatch(rec) }, nil
	default: // <, <=, >, >=
		if hasEmpty {
			return nil, jqlError("The operator '" + c.op + "' does not support searching for EMPTY values.")
		}
		return anyMatch, nil
	}
}

func (s *Server) functionError(v jqlValue, f *jqlField) error {
	switch strings.ToLower(v.fn) {
	case "currentuser", "now":
		return jqlError("A value provided by the function '" + v.fn + "' is invalid for the field '" + f.name + "'.")
	}
	return jqlError("Unable to find JQL function '" + v.fn + "()'.")
}

func valueNotFound(v jqlValue, f *jqlField) error {
	return jqlError("The value '" + v.text + "' does not exist for the field '" + f.name + "'.")
}

// emptinessLocked returns the test for an empty field.
func (s *Server) emptinessLocked(f *jqlField) issuePred {
	switch f.kind {
	case kResolution:
		return func(rec *issueRecord) bool { return rec.issue.Resolution == "" }
	case kLabels:
		return func(rec *issueRecord) bool { return len(rec.issue.Labels) == 0 }
	case kUser:
		if f.id == "assignee" {
			return func(*issueRecord) bool { return true }
		}
		return func(rec *issueRecord) bool { return rec.issue.Reporter == (User{}) }
	case kText:
		return func(rec *issueRecord) bool {
			for _, t := range s.textsOf(f, rec) {
				if t != "" {
					return false
				}
			}
			return true
		}
	case kSelect:
		return func(rec *issueRecord) bool {
			v, ok := selectValue(rec.issue.Fields[f.id])
			return !ok || v == ""
		}
	case kDate:
		return func(rec *issueRecord) bool { return dateOf(f, rec).IsZero() }
	}
	return func(*issueRecord) bool { return false }
}

// textsOf returns the texts a text clause searches.
func (s *Server) textsOf(f *jqlField, rec *issueRecord) []string {
	is := &rec.issue
	comments := func() []string {
		out := make([]string, 0, len(rec.comments))
		for _, c := range rec.comments {
			out = append(out, c.Body)
		}
		return out
	}
	switch f.id {
	case "summary":
		return []string{is.Summary}
	case "description":
		return []string{is.Description}
	case "comment":
		return comments()
	case "text":
		out := append([]string{is.Summary, is.Description}, comments()...)
		for _, cf := range s.fields {
			if cf.kind == kindText {
				v, _ := textValue(is.Fields[cf.id])
				out = append(out, v)
			}
		}
		return out
	}
	v, _ := textValue(is.Fields[f.id])
	return []string{v}
}

func dateOf(f *jqlField, rec *issueRecord) time.Time {
	switch f.id {
	case "created":
		return rec.issue.Created
	case "updated":
		return rec.issue.Updated
	}
	return rec.issue.ResolutionDate
}

// valuePredLocked returns the test "the field holds this value" (or, for
// ~ and the comparisons, "contains" and "compares so").
func (s *Server) valuePredLocked(f *jqlField, op string, v jqlValue) (issuePred, error) {
	lit := v.text
	switch f.kind {
	case kProject:
		for _, p := range s.projects {
			if strings.EqualFold(p.key, lit) || strings.EqualFold(p.name, lit) || p.id == lit {
				key := p.key
				return func(rec *issueRecord) bool { return strings.EqualFold(rec.issue.Project, key) }, nil
			}
		}
		return nil, valueNotFound(v, f)
	case kStatus:
		st, ok := s.workflow.status(lit)
		if !ok {
			return nil, valueNotFound(v, f)
		}
		return func(rec *issueRecord) bool { return rec.issue.Status == st.Name }, nil
	case kCategory:
		for key, c := range categories {
			if strings.EqualFold(c.name, lit) || strings.EqualFold(key, lit) || strconv.Itoa(c.id) == lit {
				return func(rec *issueRecord) bool { return categoryOf(&s.workflow, rec.issue.Status) == key }, nil
			}
		}
		return nil, valueNotFound(v, f)
	case kIssueType:
		for _, t := range s.issueTypes {
			if strings.EqualFold(t.name, lit) || t.id == lit {
				name := t.name
				return func(rec *issueRecord) bool { return rec.issue.IssueType == name }, nil
			}
		}
		return nil, valueNotFound(v, f)
	case kKey:
		return s.keyPredLocked(f, op, v)
	case kResolution:
		if strings.EqualFold(lit, "unresolved") {
			return func(rec *issueRecord) bool { return rec.issue.Resolution == "" }, nil
		}
		r, ok := findResolution(lit)
		if !ok {
			return nil, valueNotFound(v, f)
		}
		return func(rec *issueRecord) bool { return rec.issue.Resolution == r.name }, nil
	case kLabels:
		return func(rec *issueRecord) bool {
			return slices.ContainsFunc(rec.issue.Labels, func(l string) bool { return strings.EqualFold(l, lit) })
		}, nil
	case kUser:
		if v.fn != "" {
			if !strings.EqualFold(v.fn, "currentUser") {
				return nil, s.functionError(v, f)
			}
			me := s.Myself()
			lit = me.Name
			if s.cloud() {
				lit = me.AccountID
			}
		}
		if f.id == "assignee" {
			return func(*issueRecord) bool { return false }, nil
		}
		if s.cloud() {
			return func(rec *issueRecord) bool { return rec.issue.Reporter.AccountID == lit }, nil
		}
		return func(rec *issueRecord) bool {
			u := rec.issue.Reporter
			return strings.EqualFold(u.Name, lit) || strings.EqualFold(u.Key, lit)
		}, nil
	case kText:
		needle := strings.ToLower(strings.NewReplacer("*", "", "?", "").Replace(lit))
		return func(rec *issueRecord) bool {
			for _, t := range s.textsOf(f, rec) {
				if t != "" && strings.Contains(strings.ToLower(t), needle) {
					return true
				}
			}
			return false
		}, nil
	case kSelect:
		return func(rec *issueRecord) bool {
			got, ok := selectValue(rec.issue.Fields[f.id])
			return ok && strings.EqualFold(got, lit)
		}, nil
	case kDate:
		var t time.Time
		if v.fn != "" {
			if !strings.EqualFold(v.fn, "now") {
				return nil, s.functionError(v, f)
			}
			t = s.now()
		} else {
			var ok bool
			if t, ok = parseJQLDate(lit, s.now()); !ok {
				return nil, jqlError("Date value '" + lit + "' for field '" + f.name + "' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")
			}
		}
		return func(rec *issueRecord) bool {
			d := dateOf(f, rec)
			if d.IsZero() {
				return false
			}
			switch op {
			case "<":
				return d.Before(t)
			case "<=":
				return !d.After(t)
			case ">":
				return d.After(t)
			case ">=":
				return !d.Before(t)
			}
			return d.Truncate(time.Minute).Equal(t.Truncate(time.Minute))
		}, nil
	}
	return nil, jqlError("unsupported field")
}

// keyPredLocked handles key/issuekey/id clauses. Like Jira, a well-formed key
// that does not exist is an error, not an empty result.
func (s *Server) keyPredLocked(f *jqlField, op string, v jqlValue) (issuePred, error) {
	lit := v.text
	var target *issueRecord
	if _, err := strconv.Atoi(lit); err == nil {
		target = s.issues[lit]
	} else if keyPattern.MatchString(lit) {
		target = s.lookupLocked(lit)
	} else {
		return nil, jqlError("The issue key '" + lit + "' for field '" + f.name + "' is invalid.")
	}
	if target == nil {
		return nil, jqlError("An issue with key '" + lit + "' does not exist for field '" + f.name + "'.")
	}
	tp, tn := splitKey(target.issue.Key)
	return func(rec *issueRecord) bool {
		if op == "=" || op == "!=" || op == "in" || op == "not in" {
			return rec == target
		}
		p, n := splitKey(rec.issue.Key)
		if p != tp {
			return false
		}
		switch op {
		case "<":
			return n < tn
		case "<=":
			return n <= tn
		case ">":
			return n > tn
		}
		return n >= tn
	}, nil
}

func splitKey(key string) (string, int) {
	p, num, _ := strings.Cut(key, "-")
	n, _ := strconv.Atoi(num)
	return p, n
}

var periodPattern = regexp.MustCompile(`^\s*([-+]?)\s*((?:\d+\s*[wdhm]\s*)+)$`)
var periodPart = regexp.MustCompile(`(\d+)\s*([wdhm])`)

// parseJQLDate reads an absolute date (yyyy/MM/dd [HH:mm], yyyy-MM-dd
// [HH:mm], UTC) or a period relative to now ("-5d", "4w 2d", "-15m").
func parseJQLDate(v string, now time.Time) (time.Time, bool) {
	for _, layout := range []string{"2006/01/02 15:04", "2006-01-02 15:04", "2006/01/02", "2006-01-02"} {
		if t, err := time.Parse(layout, strings.TrimSpace(v)); err == nil {
			return t, true
		}
	}
	m := periodPattern.FindStringSubmatch(strings.ToLower(v))
	if m == nil {
		return time.Time{}, false
	}
	var d time.Duration
	for _, p := range periodPart.FindAllStringSubmatch(m[2], -1) {
		n, _ := strconv.Atoi(p[1])
		unit := map[string]time.Duration{"w": 7 * 24 * time.Hour, "d": 24 * time.Hour, "h": time.Hour, "m": time.Minute}[p[2]]
		d += time.Duration(n) * unit
	}
	if m[1] == "-" {
		d = -d
	}
	return now.Add(d), true
}

// sortKey is the value an issue sorts by; empty values sort last ascending
// and first descending, as in Jira.
type sortKey struct {
	empty bool
	s     string
	n     int64
}

func compareSortKeys(a, b sortKey) int {
	switch {
	case a.empty && b.empty:
		return 0
	case a.empty:
		return 1
	case b.empty:
		return -1
	}
	return cmp.Or(cmp.Compare(a.s, b.s), cmp.Compare(a.n, b.n))
}

func keySortKey(rec *issueRecord) sortKey {
	p, n := splitKey(rec.issue.Key)
	return sortKey{s: p, n: int64(n)}
}

// compileOrderLocked builds the ordering: the ORDER BY terms, then key
// ascending (also the order without ORDER BY).
func (s *Server) compileOrderLocked(terms []jqlOrder) (func(a, b *issueRecord) int, error) {
	type term struct {
		key  func(*issueRecord) sortKey
		desc bool
	}
	var ts []term
	for _, o := range terms {
		f, err := s.resolveFieldLocked(o.field)
		if err != nil {
			return nil, err
		}
		key, err := s.sortKeyFunc(f)
		if err != nil {
			return nil, err
		}
		ts = append(ts, term{key, o.desc})
	}
	return func(a, b *issueRecord) int {
		for _, t := range ts {
			c := compareSortKeys(t.key(a), t.key(b))
			if t.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return compareSortKeys(keySortKey(a), keySortKey(b))
	}, nil
}

func (s *Server) sortKeyFunc(f *jqlField) (func(*issueRecord) sortKey, error) {
	switch f.kind {
	case kKey:
		return keySortKey, nil
	case kProject:
		return func(rec *issueRecord) sortKey { return sortKey{s: rec.issue.Project} }, nil
	case kStatus:
		return func(rec *issueRecord) sortKey {
			return sortKey{n: int64(s.workflow.statusIndex(rec.issue.Status))}
		}, nil
	case kCategory:
		order := map[string]int64{CategoryNew: 0, CategoryIndeterminate: 1, CategoryDone: 2}
		return func(rec *issueRecord) sortKey {
			return sortKey{n: order[categoryOf(&s.workflow, rec.issue.Status)]}
		}, nil
	case kIssueType:
		return func(rec *issueRecord) sortKey { return sortKey{s: strings.ToLower(rec.issue.IssueType)} }, nil
	case kResolution:
		return func(rec *issueRecord) sortKey {
			r := rec.issue.Resolution
			return sortKey{empty: r == "", n: int64(resolutionIndex(r))}
		}, nil
	case kLabels:
		return func(rec *issueRecord) sortKey {
			ls := slices.Clone(rec.issue.Labels)
			slices.Sort(ls)
			return sortKey{empty: len(ls) == 0, s: strings.ToLower(strings.Join(ls, " "))}
		}, nil
	case kUser:
		return func(rec *issueRecord) sortKey {
			if f.id == "assignee" {
				return sortKey{empty: true}
			}
			u := rec.issue.Reporter
			return sortKey{empty: u == (User{}), s: strings.ToLower(u.DisplayName)}
		}, nil
	case kText:
		if f.custom == nil && f.id != "summary" {
			return nil, jqlError("Field '" + f.name + "' does not support sorting.")
		}
		return func(rec *issueRecord) sortKey {
			t := s.textsOf(f, rec)[0]
			return sortKey{empty: t == "", s: strings.ToLower(t)}
		}, nil
	case kSelect:
		return func(rec *issueRecord) sortKey {
			v, ok := selectValue(rec.issue.Fields[f.id])
			return sortKey{empty: !ok || v == "", s: strings.ToLower(v)}
		}, nil
	case kDate:
		return func(rec *issueRecord) sortKey {
			d := dateOf(f, rec)
			return sortKey{empty: d.IsZero(), n: d.UnixMilli()}
		}, nil
	}
	return nil, jqlError("Field '" + f.name + "' does not support sorting.")
}

// searchLocked runs a query and returns the matching issues in order. It
// reports whether the query has a restriction (is bounded).
//
// Paging a search runs the same query once per page. Results are cached by
// query text until an issue changes (s.gen), except for queries on dates,
// whose results move with the clock; a query that pins one issue by id
// ("... AND id = 10001", how the bridge re-reads an issue) looks only at it.
// The returned slice is shared with the cache: callers must not modify it.
func (s *Server) searchLocked(jql string) ([]*issueRecord, bool, error) {
	if c, ok := s.searches[jql]; ok && c.gen == s.gen {
		return c.out, c.bounded, nil
	}
	q, err := parseJQL(jql)
	if err != nil {
		return nil, false, err
	}
	s.jqlClock = false
	pred, order, err := s.compileJQLLocked(q)
	if err != nil {
		return nil, false, err
	}
	candidates := s.order
	if id, ok := pinnedID(q.where); ok {
		candidates = nil
		if _, exists := s.issues[id]; exists {
			candidates = []string{id}
		}
	}
	var out []*issueRecord
	for _, id := range candidates {
		rec := s.issues[id]
		if pred == nil || pred(rec) {
			out = append(out, rec)
		}
	}
	slices.SortStableFunc(out, order)
	bounded := q.where != nil
	if !s.jqlClock {
		if s.searches == nil || len(s.searches) >= maxCachedSearches {
			s.searches = map[string]cachedSearch{}
		}
		s.searches[jql] = cachedSearch{gen: s.gen, out: out, bounded: bounded}
	}
	return out, bounded, nil
}

// maxCachedSearches bounds the search cache; it is emptied when full.
const maxCachedSearches = 16

// cachedSearch is a search result, valid while s.gen is unchanged.
type cachedSearch struct {
	gen     uint64
	out     []*issueRecord
	bounded bool
}

// changedLocked records that an issue was added or changed: cached search
// results are stale.
func (s *Server) changedLocked() { s.gen++ }

// pinnedID returns N when where is a conjunction one of whose terms is
// "id = N" (one value, digits only): no other issue can match.
func pinnedID(where jqlExpr) (string, bool) {
	switch e := where.(type) {
	case jqlAnd:
		if id, ok := pinnedID(e.l); ok {
			return id, true
		}
		return pinnedID(e.r)
	case jqlClause:
		if strings.EqualFold(e.field.name, "id") && e.field.num == "" && e.op == "=" && len(e.values) == 1 &&
			e.values[0].fn == "" && !e.values[0].empty && isDigits(e.values[0].text) {
			return e.values[0].text, true
		}
	}
	return "", false
}

func isDigits(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
