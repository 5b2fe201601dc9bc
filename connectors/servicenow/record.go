package servicenow

import (
	"bytes"
	"encoding/json"
	"fmt"
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
