package labfile

// Expectations as data in an export: an expectation a constructor of
// package assertions built (assertions.CallOf) is written as a call
// (call.go) when its arguments have a file form; the exporter checks that
// the call builds back the same expectation (name and statement), and
// fails naming it otherwise. Timelines (scenarios.Timelines) and
// middleboxes built from arguments (Middleboxes) are encoded the same way.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/scenarios"
)

// asCall is m as a call that builds it back, if it has one.
func asCall(m types.GomegaMatcher) (map[string]any, error) {
	c, ok := assertions.CallOf(m)
	if !ok {
		return nil, fmt.Errorf("%T records no call", m)
	}
	enc, err := encodeCall(c)
	if err != nil {
		return nil, err
	}
	back, err := callMatcher(enc)
	if err != nil {
		return nil, fmt.Errorf("%s: the call does not build back: %w", c.Fn, err)
	}
	if assertions.NameOf(back) != assertions.NameOf(m) || assertions.Describe(back) != assertions.Describe(m) {
		return nil, fmt.Errorf("%s: the call builds %q (%s), not %q (%s)", c.Fn, assertions.NameOf(back), assertions.Describe(back), assertions.NameOf(m), assertions.Describe(m))
	}
	return enc, nil
}

func encodeCall(c assertions.Call) (map[string]any, error) { return expectations.encode(c) }

// asTimelineCall is the call that built a scripted timeline, checked to
// build back a timeline that records the same call.
func asTimelineCall(tc scenarios.TimelineCall) (map[string]any, error) {
	enc, err := timelines.encode(assertions.Call{Fn: tc.Fn, Args: tc.Args})
	if err != nil {
		return nil, err
	}
	back, err := callTimeline(enc)
	if err != nil {
		return nil, fmt.Errorf("%s: the call does not build back: %w", tc.Fn, err)
	}
	again, err := timelines.encode(assertions.Call{Fn: back.Call.Fn, Args: back.Call.Args})
	if err != nil || !reflect.DeepEqual(again, enc) {
		return nil, fmt.Errorf("%s: the call builds back %v, not %v (%v)", tc.Fn, again, enc, err)
	}
	return enc, nil
}

// encode writes c, a call of one of r's constructors.
func (r registry) encode(c assertions.Call) (map[string]any, error) {
	fn, ok := r.fns[c.Fn]
	if !ok {
		return nil, fmt.Errorf("%s is not in %s", c.Fn, r.what)
	}
	ft := reflect.TypeOf(fn)
	args := []any{}
	for i, a := range c.Args {
		if ft.IsVariadic() && i == ft.NumIn()-1 {
			v := reflect.ValueOf(a)
			if v.Kind() != reflect.Slice {
				return nil, fmt.Errorf("%s: variadic argument %T", c.Fn, a)
			}
			for k := range v.Len() {
				e, err := encodeArg(v.Index(k).Interface())
				if err != nil {
					return nil, fmt.Errorf("%s: %w", c.Fn, err)
				}
				args = append(args, e)
			}
			continue
		}
		e, err := encodeArg(a)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Fn, err)
		}
		args = append(args, e)
	}
	out := map[string]any{c.Fn: args}
	var with []any
	for _, t := range c.Then {
		if len(t.Args) == 0 {
			with = append(with, t.Fn)
			continue
		}
		var targs []any
		for _, a := range t.Args {
			e, err := encodeArg(a)
			if err != nil {
				return nil, fmt.Errorf("%s.%s: %w", c.Fn, t.Fn, err)
			}
			targs = append(targs, e)
		}
		with = append(with, map[string]any{t.Fn: targs})
	}
	if len(with) > 0 {
		out["with"] = with
	}
	return out, nil
}

func encodeArg(a any) (any, error) {
	if c, ok := assertions.CallOf(a); ok {
		return encodeCall(c)
	}
	switch x := a.(type) {
	case time.Duration:
		return x.String(), nil
	case []byte:
		if !utf8.Valid(x) || bytes.ContainsAny(x, "\x00") {
			return map[string]any{"base64": base64.StdEncoding.EncodeToString(x)}, nil
		}
		return string(x), nil
	case tfo.Key:
		return x.String(), nil
	case string, bool:
		return x, nil
	case fmt.Stringer:
		v := reflect.ValueOf(a)
		if v.CanInt() || v.CanUint() {
			return x.String(), nil
		}
	}
	v := reflect.ValueOf(a)
	switch {
	case !v.IsValid():
		return nil, fmt.Errorf("a nil argument")
	case v.Kind() == reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return encodeArg(v.Elem().Interface())
	case v.Kind() == reflect.Map && v.Type().Key().Kind() == reflect.String:
		out := map[string]any{}
		for _, k := range v.MapKeys() {
			e, err := encodeArg(v.MapIndex(k).Interface())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k.String(), err)
			}
			out[k.String()] = e
		}
		return out, nil
	case v.Kind() == reflect.Struct:
		// Its exported fields that are set; a struct with unexported
		// state has no file form.
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				return nil, fmt.Errorf("a %s has no file form (unexported %s)", t, f.Name)
			}
			if v.Field(i).IsZero() {
				continue
			}
			e, err := encodeArg(v.Field(i).Interface())
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name, err)
			}
			out[f.Name] = e
		}
		return out, nil
	case v.CanInt():
		return v.Int(), nil
	case v.CanUint():
		return v.Uint(), nil
	case v.Kind() == reflect.String:
		return v.String(), nil
	case v.Kind() == reflect.Slice:
		list := []any{}
		for k := range v.Len() {
			e, err := encodeArg(v.Index(k).Interface())
			if err != nil {
				return nil, err
			}
			list = append(list, e)
		}
		return list, nil
	}
	return nil, fmt.Errorf("a %T has no file form", a)
}
