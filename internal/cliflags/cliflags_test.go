package cliflags

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestFromEnv(t *testing.T) {
	t.Setenv("APISESSIONS_CLIENT_IP", "198.51.100.4")
	t.Setenv("APISESSIONS_MAX", "7")
	t.Setenv("APISESSIONS_OUTPUT", "yaml")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ip := fs.String("client-ip", "192.0.2.1", "")
	max := fs.Int("max", 5, "")
	out := fs.String("output", "text", "")
	if err := fs.Parse([]string{"--output", "text"}); err != nil {
		t.Fatal(err)
	}
	if err := FromEnv(fs); err != nil {
		t.Fatal(err)
	}
	if *ip != "198.51.100.4" || *max != 7 {
		t.Errorf("flags from the environment: client-ip %q max %d", *ip, *max)
	}
	if *out != "text" {
		t.Errorf("the command line lost to the environment: output %q", *out)
	}

	t.Setenv("APISESSIONS_MAX", "many-secret")
	fs2 := flag.NewFlagSet("y", flag.ContinueOnError)
	fs2.SetOutput(io.Discard)
	fs2.Int("max", 5, "")
	_ = fs2.Parse(nil)
	err := FromEnv(fs2)
	if err == nil || !strings.Contains(err.Error(), "APISESSIONS_MAX") || strings.Contains(err.Error(), "many-secret") {
		t.Errorf("a bad value: error %v; want one naming the variable and not echoing its value", err)
	}
}
