package policy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// checkShape walks the document alongside the Go type it will be decoded
// into, and refuses what encoding/json would accept loosely: member names
// that differ from a json tag only in case, duplicate members (the last one
// would win), unknown members, null, and values of the wrong kind — each
// with the field's path. After it, json.Unmarshal cannot fail.
func checkShape(v gjson.Result, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if v.Type == gjson.Null {
		return fieldErr(path, "null is not allowed; leave the field out for its default")
	}
	switch t.Kind() {
	case reflect.Struct:
		if !v.IsObject() {
			return fieldErr(path, "want an object, got %s", kind(v))
		}
		var err error
		seen := map[string]bool{}
		v.ForEach(func(k, val gjson.Result) bool {
			name := k.String()
			p := join(path, name)
			f, ok := fieldByTag(t, name)
			switch {
			case !ok:
				err = fieldErr(p, "unknown field")
			case seen[name]:
				err = fieldErr(p, "appears twice")
			default:
				seen[name] = true
				err = checkShape(val, f.Type, p)
			}
			return err == nil
		})
		return err
	case reflect.Slice:
		if !v.IsArray() {
			return fieldErr(path, "want an array, got %s", kind(v))
		}
		var err error
		i := 0
		v.ForEach(func(_, val gjson.Result) bool {
			err = checkShape(val, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			i++
			return err == nil
		})
		return err
	case reflect.String:
		if v.Type != gjson.String {
			return fieldErr(path, "want a string, got %s", kind(v))
		}
	case reflect.Bool:
		if v.Type != gjson.True && v.Type != gjson.False {
			return fieldErr(path, "want true or false, got %s", kind(v))
		}
	case reflect.Int, reflect.Int64:
		if v.Type != gjson.Number {
			return fieldErr(path, "want an integer, got %s", kind(v))
		}
		if _, err := strconv.ParseInt(v.Raw, 10, t.Bits()); err != nil {
			return fieldErr(path, "want an integer that fits in %d bits, got %s", t.Bits(), v.Raw)
		}
	default:
		return fieldErr(path, "unsupported Go type %v", t) // a bug in the raw types
	}
	return nil
}

// fieldByTag finds the field whose json tag is exactly name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func kind(v gjson.Result) string {
	switch v.Type {
	case gjson.String:
		return "a string"
	case gjson.Number:
		return "a number"
	case gjson.True, gjson.False:
		return "a boolean"
	case gjson.Null:
		return "null"
	}
	if v.IsArray() {
		return "an array"
	}
	return "an object"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
