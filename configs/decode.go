package configs

import (
	"fmt"
	"math"
	"reflect"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// decoder walks the YAML node tree against the Go types itself, rather than
// leaving it to yaml.v3, so that it can report every problem at once (yaml
// stops at the first custom-type error), name unknown keys with the place
// they were found, catch duplicate keys, and remember the line of every key
// for validation errors.
type decoder struct {
	errs  []fieldError
	lines lineIndex
	nodes int // values visited; aliases can multiply them
}

// maxNodes bounds the values one config may expand to through aliases.
const maxNodes = 100_000

// fieldError is one problem at one key path ("servers[1].url").
type fieldError struct {
	line    int
	path    string
	msg     string
	unknown string // the offending key of an unknown-key error; path is its parent
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func reflectValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

func (d *decoder) fail(line int, path, msg string) {
	d.errs = append(d.errs, fieldError{line: line, path: path, msg: msg})
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	d.nodes++
	if d.nodes > maxNodes {
		if d.nodes == maxNodes+1 {
			d.fail(n.Line, "", fmt.Sprintf("more than %d values (aliases expanded too far)", maxNodes))
		}
		return
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default in place
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(n.Line, path, err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n.Line, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n.Line, path, "must be a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
			d.fail(n.Line, path, "must be true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if n.Kind != yaml.ScalarNode || err != nil || v.OverflowInt(i) {
			d.fail(n.Line, path, "must be an integer")
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.fail(n.Line, path, "must be a number")
			return
		}
		v.SetFloat(f)
	default:
		// Only reachable if a field of an unsupported kind is added.
		d.fail(n.Line, path, "unsupported field type "+v.Type().String())
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping")
		return
	}
	t := v.Type()
	fields := map[string]int{}
	lineField := -1
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		switch {
		case tag == "-" && f.Name == "Line" && f.Type.Kind() == reflect.Int:
			lineField = i
		case tag != "" && tag != "-" && f.IsExported():
			fields[tag] = i
		}
	}
	if lineField >= 0 {
		v.Field(lineField).SetInt(int64(n.Line))
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.fail(k.Line, path, "keys must be strings")
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errs = append(d.errs, fieldError{line: k.Line, path: path, unknown: k.Value})
			continue
		}
		p := joinPath(path, k.Value)
		if !d.claimKey(seen, k, p) {
			continue
		}
		d.decode(val, v.Field(idx), p)
	}
}

// claimKey records the mapping key k (at path p) as seen and remembers its
// line for later errors. A key already in seen fails, naming the line of its
// first use, because YAML would otherwise let the last one win silently and
// a reviewer reading the first would be misled.
func (d *decoder) claimKey(seen map[string]int, k *yaml.Node, p string) bool {
	if first, dup := seen[k.Value]; dup {
		d.fail(k.Line, p, fmt.Sprintf("duplicate key (first on line %d)", first))
		return false
	}
	seen[k.Value] = k.Line
	d.lines[p] = k.Line
	return true
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, "must be a mapping")
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		d.fail(n.Line, path, "unsupported map key type")
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.fail(k.Line, path, "keys must be non-empty strings")
			continue
		}
		p := joinPath(path, k.Value)
		if !d.claimKey(seen, k, p) {
			continue
		}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, e, p)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}
