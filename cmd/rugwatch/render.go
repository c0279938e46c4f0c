package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/rugwatch/rugwatch"
	"github.com/rugwatch/rugwatch/visible"
)

// printDefinition shows a tool definition as the model will read it: the
// description as text, then every field, with each string from the server
// rendered by visible so nothing in it can hide or move.
func printDefinition(w io.Writer, def json.RawMessage, indent string) {
	var v map[string]any
	d := json.NewDecoder(bytes.NewReader(def))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		fmt.Fprintf(w, "%s(unreadable definition: %v)\n", indent, err)
		return
	}
	if desc, ok := v["description"].(string); ok {
		fmt.Fprintf(w, "%sdescription:\n", indent)
		for _, line := range strings.Split(visible.Text(desc), "\n") {
			fmt.Fprintf(w, "%s  │ %s\n", indent, line)
		}
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		if k != "description" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s%s: ", indent, visible.Line(k))
		printValue(w, v[k], indent+"  ")
		fmt.Fprintln(w)
	}
}

// printValue writes a decoded JSON value as indented JSON-like text with
// every string made visible.
func printValue(w io.Writer, v any, indent string) {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			fmt.Fprint(w, "{}")
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "{")
		for i, k := range keys {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, "\n%s%s: ", indent, quote(k))
			printValue(w, x[k], indent+"  ")
		}
		fmt.Fprintf(w, "\n%s}", indent[:max(len(indent)-2, 0)])
	case []any:
		if len(x) == 0 {
			fmt.Fprint(w, "[]")
			return
		}
		fmt.Fprint(w, "[")
		for i, e := range x {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, "\n%s", indent)
			printValue(w, e, indent+"  ")
		}
		fmt.Fprintf(w, "\n%s]", indent[:max(len(indent)-2, 0)])
	case string:
		fmt.Fprint(w, quote(x))
	default:
		b, _ := json.Marshal(x)
		fmt.Fprint(w, string(b))
	}
}

// printChanges lists field-level changes, old and new values made visible.
func printChanges(w io.Writer, changes []rugwatch.Change, indent string) {
	for _, c := range changes {
		path := c.Path
		if path == "" {
			path = "/"
		}
		fmt.Fprintf(w, "%s%s %s\n", indent, opMark(c.Op), visible.Line(path))
		if len(c.Old) > 0 {
			printChangeValue(w, "-", c.Old, indent+"    ")
		}
		if len(c.New) > 0 {
			printChangeValue(w, "+", c.New, indent+"    ")
		}
		var old, nw string
		if c.Op == "replace" && json.Unmarshal(c.Old, &old) == nil && json.Unmarshal(c.New, &nw) == nil {
			if wd, ok := visible.WordDiff(old, nw); ok {
				fmt.Fprintf(w, "%s    word diff ([-removed-] {+inserted+}): %s\n", indent, wd)
			}
		}
	}
}

func opMark(op string) string {
	switch op {
	case "add":
		return "+ add    "
	case "remove":
		return "- remove "
	}
	return "~ replace"
}

func printChangeValue(w io.Writer, mark string, raw json.RawMessage, indent string) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		fmt.Fprintf(w, "%s%s %s\n", indent, mark, visible.Line(string(raw)))
		return
	}
	if s, ok := v.(string); ok {
		for _, line := range strings.Split(visible.Text(s), "\n") {
			fmt.Fprintf(w, "%s%s │ %s\n", indent, mark, line)
		}
		return
	}
	var b strings.Builder
	printValue(&b, v, indent+"  ")
	fmt.Fprintf(w, "%s%s %s\n", indent, mark, b.String())
}

// quote renders a server string between double quotes, visible and with
// its own quotes escaped, so where it ends is never in doubt.
func quote(s string) string {
	return `"` + strings.ReplaceAll(visible.Line(s), `"`, `\"`) + `"`
}

// printFindings lists poisoning findings, one a line, under a definition.
func printFindings(w io.Writer, indent string, fs []rugwatch.Finding) {
	for _, f := range fs {
		fmt.Fprintf(w, "%s! %s %s at %s: %s\n", indent, f.Severity, f.Rule, visible.Line(f.Path), visible.Message(f.Message))
	}
}
