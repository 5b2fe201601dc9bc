package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"testing"
)

// TestServiceNowBusinessRuleIsAccepted runs the business rule shipped in
// integrations/servicenow (under stand-ins for the ServiceNow APIs) and sends
// what it produced to the server: the rule and the endpoint must agree on the
// body and the signature.
func TestServiceNowBusinessRuleIsAccepted(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	cmd := exec.CommandContext(t.Context(), node,
		"../../integrations/servicenow/testdata/run_business_rule.js",
		"../../integrations/servicenow/business_rule_image_request_approved.js")
	cmd.Env = append(os.Environ(), "BRIDGE_SECRET="+snSecret, "RITM_SYS_ID=00112233445566778899aabbccddeeff")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the rule: %v\n%s", err, stderr.String())
	}
	var sent struct {
		Method  string            `json:"method"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}
	if err := json.Unmarshal(out, &sent); err != nil {
		t.Fatalf("rule output %q: %v", out, err)
	}
	if sent.Method != http.MethodPost {
		t.Errorf("method = %q, want POST", sent.Method)
	}

	h := newHarness(t, nil)
	r := h.post("/webhooks/servicenow", []byte(sent.Body), sent.Headers)
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d %q, want 202", r.status, r.body)
	}
	h.wantQueued("servicenow/00112233445566778899aabbccddeeff")
	if r := h.post("/webhooks/servicenow", []byte(sent.Body), sent.Headers); r.status != http.StatusOK {
		t.Fatalf("resent: status = %d, want 200 duplicate", r.status)
	}
}
