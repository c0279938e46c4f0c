package configs

import (
	"strings"
	"testing"
	"time"
)

func TestClassifierConfig(t *testing.T) {
	c, err := parse(t, "classifier:\n  command: [\"/usr/local/bin/classify\", \"--json\"]\n  timeout: 3s\n")
	if err != nil || !c.Classifier.Enabled() || c.Classifier.EffectiveTimeout() != 3*time.Second || c.Classifier.Command[1] != "--json" {
		t.Fatalf("%+v %v", c, err)
	}
	for yml, want := range map[string]string{
		"classifier:\n  timeout: 1s\n":                     "rugwatch.yaml:1: classifier.command: needs the command",
		"classifier:\n  command: [x]\n  on_error: panic\n": "rugwatch.yaml:3: classifier.on_error: must be flag or ignore",
		"classifier:\n  command: [x]\n  timeout: 2h\n":     "rugwatch.yaml:3: classifier.timeout: must be between",
		"classifier:\n  command: [x]\n  colour: blue\n":    "unknown key \"colour\"",
	} {
		if _, err := parse(t, yml); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yml, err, want)
		}
	}
}
