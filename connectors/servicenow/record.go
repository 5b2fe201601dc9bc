package servicenow

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// value is one field of a Table API record. ServiceNow sends every field as a
// string in value mode, as {"display_value","value"[,"link"]} with
// sysparm_display_value=all, and reference fields as {"link","value"} unless
// links are excluded; value decodes all of them.
type value struct {
	Value   string
	Display string
}

func (v *value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		*v = value{}
		return nil
	}
	switch b[0] {
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = value{Value: s, Display: s}
		return nil
	case '{':
		var o struct {
			Value   json.RawMessage `json:"value"`
			Display json.RawMessage `json:"display_value"`
		}
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		v.Value, v.Display = scalar(o.Value), scalar(o.Display)
		if v.Display == "" {
			v.Display = v.Value
		}
		return nil
	default:
		// Numbers and booleans are not documented, but tolerate them.
		s := string(b)
		*v = value{Value: s, Display: s}
		return nil
	}
}

func scalar(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// record is one row: field name (possibly dotted, "variables.image_name") → value.
type record map[string]value

// UnmarshalJSON decodes a row, refusing one whose sys_id is not a sys_id (32
// lowercase hex characters). A sys_id read from a response goes back into
// encoded queries (the paging cursor "sys_id>…") and URL paths, where a "^"
// or a line break would change what the query means ("^NQ" starts a second,
// OR-ed query; "^ORDERBY…" reorders the pages). A genuine instance never
// sends such a sys_id; a response that does is refused whole, not trusted.
func (r *record) UnmarshalJSON(b []byte) error {
	var m map[string]value
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if v, ok := m["sys_id"]; ok && v.Value != "" && !sysIDRe.MatchString(v.Value) {
		return fmt.Errorf("a record's sys_id %s is not a sys_id (32 lowercase hex characters); refusing the response", quoteValue(v.Value))
	}
	*r = m
	return nil
}

// quoteValue quotes response text for an error: escaped, at most 40 bytes.
func quoteValue(s string) string {
	if len(s) > 40 {
		return strconv.QuoteToASCII(strings.ToValidUTF8(s[:40], "")) + "..."
	}
	return strconv.QuoteToASCII(s)
}

func (r record) get(name string) string { return r[name].Value }

type listResponse struct {
	Result []record `json:"result"`
}

type oneResponse struct {
	Result record `json:"result"`
}

func (r *oneResponse) UnmarshalJSON(b []byte) error {
	var raw struct {
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw.Result) > 0 && raw.Result[0] == '[' {
		// Some releases answer a single-record GET with a one-element list.
		var list []record
		if err := json.Unmarshal(raw.Result, &list); err != nil {
			return err
		}
		if len(list) != 1 {
			return fmt.Errorf("expected one record, got %d", len(list))
		}
		r.Result = list[0]
		return nil
	}
	return json.Unmarshal(raw.Result, &r.Result)
}
