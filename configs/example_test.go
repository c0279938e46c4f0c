package configs

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// configKeys lists every key path the Config struct reads, "servers[].env"
// style: a struct field with a yaml tag is a key; a type that decodes
// itself (Secret, Duration, Retention) is a leaf.
func configKeys(t reflect.Type, prefix string, out *[]string) {
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		*out = append(*out, path)
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft, path = ft.Elem(), path+"[]"
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(unmarshaler) {
			configKeys(ft, path+".", out)
		}
	}
}

// exampleKeys lists the key paths set in the example's YAML
// ("servers[].env") and, as "#name", the keys it shows commented out.
func exampleKeys(t *testing.T, text string) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, prefix)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := prefix + n.Content[i].Value
				keys[k] = true
				walk(n.Content[i+1], k+".")
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, strings.TrimSuffix(prefix, ".")+"[].")
			}
		}
	}
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(text), &root); err != nil {
		t.Fatal(err)
	}
	walk(&root, "")

	// Commented keys: "# proxy_listen: …", or a line of a commented
	// block ("#   command: […]" under "# classifier:"). Their nesting is
	// not checked: the file's own Load test proves the live keys' paths,
	// and a commented key is one a reader uncomments.
	commented := regexp.MustCompile(`(?m)^\s*#\s*(?:- )?([a-z_]+):(?:\s|$)`)
	for _, m := range commented.FindAllStringSubmatch(text, -1) {
		keys["#"+m[1]] = true
	}
	return keys
}

// The example says it documents every key rugwatch understands; a key
// added to the config structs without a line in the example fails here.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("rugwatch.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	have := exampleKeys(t, string(b))
	var want []string
	configKeys(reflect.TypeFor[Config](), "", &want)
	if len(want) < 40 {
		t.Fatalf("found only %d keys in Config: %v", len(want), want)
	}
	for _, k := range want {
		leaf := k[strings.LastIndexAny(k, ".]")+1:]
		if !have[k] && !have["#"+leaf] {
			t.Errorf("rugwatch.example.yaml does not document %s", k)
		}
	}
}
