package servicenow

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// An encoded query (sysparm_query) is parsed into this shape:
//
//	a=1^b=2^ORc=3^NQd=4^ORDERBYe
//
// is (a=1 AND (b=2 OR c=3)) OR (d=4), ordered by e. "^" separates terms, a
// term starting with "OR" is OR-ed with the previous condition (binding
// tighter than "^"), "NQ" starts a new query OR-ed with the previous ones, and
// "^^" is a literal caret inside a value.

// condition is one field/operator/value term.
type condition struct {
	field, op, value string
}

// query is a parsed encoded query.
type query struct {
	// alternatives are the NQ-separated queries; a row matches if it matches
	// any of them. Each is a conjunction of disjunctions.
	alternatives [][][]condition
	orders       []ordering
	// invalid is set when a term names a field the table does not have, or
	// cannot be parsed. Such terms are dropped.
	invalid bool
}

type ordering struct {
	field string
	desc  bool
}

// operators, longest first where one is a prefix of another.
var operators = []string{
	"ISNOTEMPTY", "ISEMPTY", "NOT IN", "NOT LIKE", "STARTSWITH", "ENDSWITH",
	"LIKE", "IN", "!=", ">=", "<=", ">", "<", "=",
}

// splitTerms splits an encoded query on "^", honouring the "^^" escape.
func splitTerms(q string) []string {
	var terms []string
	var cur strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] != '^' {
			cur.WriteByte(q[i])
			continue
		}
		if i+1 < len(q) && q[i+1] == '^' {
			cur.WriteByte('^')
			i++
			continue
		}
		terms = append(terms, cur.String())
		cur.Reset()
	}
	return append(terms, cur.String())
}

// parseQuery parses an encoded query; valid reports whether a field exists on
// the table.
func parseQuery(raw string, valid func(string) bool) query {
	var q query
	var and [][]condition // current alternative
	for _, term := range splitTerms(raw) {
		if term == "" || term == "EQ" {
			continue
		}
		switch {
		case strings.HasPrefix(term, "ORDERBYDESC"), strings.HasPrefix(term, "ORDERBY"):
			o := ordering{field: strings.TrimPrefix(term, "ORDERBY")}
			if f, ok := strings.CutPrefix(o.field, "DESC"); ok {
				o = ordering{field: f, desc: true}
			}
			if valid(o.field) {
				q.orders = append(q.orders, o)
			}
			continue
		case strings.HasPrefix(term, "GROUPBY"):
			continue
		case strings.HasPrefix(term, "NQ"):
			q.alternatives = append(q.alternatives, and)
			and = nil
			term = term[2:]
			if term == "" {
				continue
			}
		}
		isOr := false
		if t, ok := strings.CutPrefix(term, "OR"); ok {
			isOr, term = true, t
		}
		c, ok := parseCondition(term)
		if !ok || !valid(c.field) {
			q.invalid = true
			continue
		}
		if isOr && len(and) > 0 {
			and[len(and)-1] = append(and[len(and)-1], c)
		} else {
			and = append(and, []condition{c})
		}
	}
	q.alternatives = append(q.alternatives, and)
	return q
}

// parseCondition splits "field<op>value". Field names are lower case letters,
// digits, "_" and "." (dot-walks); the operator starts at the first other
// character.
func parseCondition(term string) (condition, bool) {
	i := strings.IndexFunc(term, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.')
	})
	if i <= 0 {
		return condition{}, false
	}
	rest := term[i:]
	for _, op := range operators {
		if v, ok := strings.CutPrefix(rest, op); ok {
			if (op == "ISEMPTY" || op == "ISNOTEMPTY") && v != "" {
				return condition{}, false
			}
			return condition{field: term[:i], op: op, value: v}, true
		}
	}
	return condition{}, false
}

// matches reports whether r satisfies q.
func (q query) matches(r row) bool {
	return q.matchesFunc(func(field string) cell { return r[field] })
}

// matchesFunc reports whether the record whose fields get returns satisfies
// q; a field the record does not have is the zero cell.
func (q query) matchesFunc(get func(field string) cell) bool {
	for _, alt := range q.alternatives {
		if matchAll(alt, get) {
			return true
		}
	}
	return false
}

func matchAll(and [][]condition, get func(string) cell) bool {
	for _, or := range and {
		if !slices.ContainsFunc(or, func(c condition) bool { return c.matchesCell(get(c.field)) }) {
			return false
		}
	}
	return true
}

// matchesCell evaluates one condition on the field's stored value. As in the
// platform's SQL, an empty value is NULL: it satisfies "=" with an empty
// value and ISEMPTY, but never "!=", NOT IN, NOT LIKE or a comparison, so
// "assignment_group!=X" leaves out items with no assignment group.
func (c condition) matchesCell(f cell) bool {
	v := f.value
	switch c.op {
	case "ISEMPTY":
		return v == ""
	case "ISNOTEMPTY":
		return v != ""
	case "=":
		return v == c.value
	case "IN":
		return slices.Contains(strings.Split(c.value, ","), v)
	}
	if v == "" {
		return false
	}
	switch c.op {
	case "!=":
		return v != c.value
	case "NOT IN":
		return !slices.Contains(strings.Split(c.value, ","), v)
	case "LIKE":
		return strings.Contains(v, c.value)
	case "NOT LIKE":
		return !strings.Contains(v, c.value)
	case "STARTSWITH":
		return strings.HasPrefix(v, c.value)
	case "ENDSWITH":
		return strings.HasSuffix(v, c.value)
	}
	n := compareValues(v, c.value, f.numeric)
	switch c.op {
	case ">":
		return n > 0
	case ">=":
		return n >= 0
	case "<":
		return n < 0
	case "<=":
		return n <= 0
	}
	return false
}

// compareValues compares two stored values: as integers for numeric fields
// (sys_mod_count), otherwise as strings, which orders "YYYY-MM-DD HH:MM:SS"
// dates correctly.
func compareValues(a, b string, numeric bool) int {
	if numeric {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		if errA == nil && errB == nil {
			return cmp.Compare(x, y)
		}
	}
	return strings.Compare(a, b)
}

// sortRows orders rows by q's ORDERBY terms, first term first; rows that tie
// keep their insertion order. Empty values sort first, as NULLs do.
func (q query) sortRows(rows []row) {
	if len(q.orders) == 0 {
		return
	}
	slices.SortStableFunc(rows, func(a, b row) int {
		return q.compare(func(f string) cell { return a[f] }, func(f string) cell { return b[f] })
	})
}

// compare orders two records by q's ORDERBY terms (0 when they tie).
func (q query) compare(a, b func(field string) cell) int {
	for _, o := range q.orders {
		fa, fb := a(o.field), b(o.field)
		n := compareValues(fa.value, fb.value, fa.numeric || fb.numeric)
		if o.desc {
			n = -n
		}
		if n != 0 {
			return n
		}
	}
	return 0
}
