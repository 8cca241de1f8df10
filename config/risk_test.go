package config

import "testing"

// A partial sessions.risk keeps the defaults it does not name; attack_types reads whole
// numbers and refuses anything else.
func TestRiskDecode(t *testing.T) {
	c, err := ParseAndValidate("apisessions.yaml", []byte("sessions:\n  risk:\n    half_life: 30m\n    weights: {denied: 25}\n    attack_types: {sqli: 60}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Sessions.Risk
	want := DefaultRiskWeights
	want.Denied = 25
	if r.HalfLife.Std().Minutes() != 30 || r.Weights != want || len(r.AttackTypes) != 1 || r.AttackTypes["sqli"] != 60 {
		t.Fatalf("decoded %+v", r)
	}
	_, err = ParseAndValidate("apisessions.yaml", []byte("sessions:\n  risk:\n    attack_types: {sqli: lots}\n"))
	if err == nil || err.Error() != "apisessions.yaml:3: sessions.risk.attack_types.sqli: is not a whole number; write digits only, e.g. 60" {
		t.Fatalf("a word as points: %v", err)
	}
}
