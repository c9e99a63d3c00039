package labfile

// Expectations written as calls of the assertions constructors, for what
// the vocabulary does not say:
//
//	expect:
//	  - call: {Conn: [1, {Dialogue: [client,
//	      {ClientSYN: [], with: [WithCookie, {WithPayload: [21]}]},
//	      {ServerSYNACK: [], with: [AckingSYNData]}]}]}
//
// A call is a map with one constructor's name and its arguments (a list,
// or one value), plus `with`: methods to call on the result in order (a
// Step's WithCookie, WithPayload). Arguments are converted to the
// parameter's type by reflection: numbers, strings, booleans, durations
// ("1.5s"), bytes (a string), TFO keys (the sysctl format), named
// constants by the name their String method gives ("client", "server",
// "syn retransmitted"), and nested calls.

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/onsi/gomega/types"
	"github.com/tfolab/tfolab/assertions"
	"github.com/tfolab/tfolab/lab/tfo"
	"github.com/tfolab/tfolab/middlebox"
	"github.com/tfolab/tfolab/scenarios"
)

// Constructors are the assertions constructors a file may call, by name.
// A new constructor is one line here; TestEveryConstructorIsCallable
// names any exported one that is missing.
var Constructors = map[string]any{
	"SavesOneRTT":                      assertions.SavesOneRTT,
	"PausesFollowSysctl":               assertions.PausesFollowSysctl,
	"Labelled":                         assertions.Labelled,
	"PauseLasted":                      assertions.PauseLasted,
	"Completed":                        assertions.Completed,
	"Conn":                             assertions.Conn,
	"EveryConn":                        assertions.EveryConn,
	"Responded":                        assertions.Responded,
	"RepliedWith":                      assertions.RepliedWith,
	"SynDataAcked":                     assertions.SynDataAcked,
	"ClientFail":                       assertions.ClientFail,
	"ServerAcceptedSynData":            assertions.ServerAcceptedSynData,
	"FirstByteAfterSynRetransmissions": assertions.FirstByteAfterSynRetransmissions,
	"Refused":                          assertions.Refused,
	"Stalled":                          assertions.Stalled,
	"UnansweredSynDataBySchedule":      assertions.UnansweredSynDataBySchedule,
	"RTTSampleIsHandshake":             assertions.RTTSampleIsHandshake,
	"PoolDiagnosedAs":                  assertions.PoolDiagnosedAs,
	"FailedWith":                       assertions.FailedWith,
	"ConnFailedWith":                   assertions.ConnFailedWith,
	"ClientRST":                        assertions.ClientRST,
	"ServerRST":                        assertions.ServerRST,
	"ClientFIN":                        assertions.ClientFIN,
	"ServerFIN":                        assertions.ServerFIN,
	"ServerSYN":                        assertions.ServerSYN,
	"ClientSYNACK":                     assertions.ClientSYNACK,
	"Returned":                         assertions.Returned,
	"ReturnedWithin":                   assertions.ReturnedWithin,
	"Reported":                         assertions.Reported,
	"OptionsHave":                      assertions.OptionsHave,
	"NoPackets":                        assertions.NoPackets,
	"SynAckAcked":                      assertions.SynAckAcked,
	"HaveIncreasedBy":                  assertions.HaveIncreasedBy,
	"HaveCounterDeltas":                assertions.HaveCounterDeltas,
	"CountersOf":                       assertions.CountersOf,
	"Counter":                          assertions.Counter,
	"Delta":                            assertions.Delta,
	"DiagnosedAs":                      assertions.DiagnosedAs,
	"FilesDiagnosedAs":                 assertions.FilesDiagnosedAs,
	"ClientSYN":                        assertions.ClientSYN,
	"ServerSYNACK":                     assertions.ServerSYNACK,
	"ClientData":                       assertions.ClientData,
	"ServerData":                       assertions.ServerData,
	"Dialogue":                         assertions.Dialogue,
	"NoPacket":                         assertions.NoPacket,
	"GaveUp":                           assertions.GaveUp,
	"DetectedAtGiveUp":                 assertions.DetectedAtGiveUp,
	"DataRetransmittedBeforeDetection": assertions.DataRetransmittedBeforeDetection,
	"Named":                            assertions.Named,
	"CookieCached":                     assertions.CookieCached,
	"SynDropsCached":                   assertions.SynDropsCached,
	"MiddleboxMatched":                 assertions.MiddleboxMatched,
	"MiddleboxMatchedAtLeast":          assertions.MiddleboxMatchedAtLeast,
	"ServedFile":                       assertions.ServedFile,
	"EveryBackend":                     assertions.EveryBackend,
	"ProbesAgree":                      assertions.ProbesAgree,
	"NoStrayTraffic":                   assertions.NoStrayTraffic,
	"ToolVersion":                      assertions.ToolVersion,
	"PoolServerAccepted":               assertions.PoolServerAccepted,
	"ServerTFOChild":                   assertions.ServerTFOChild,
	"ConnsFrom":                        assertions.ConnsFrom,
	"LandedOn":                         assertions.LandedOn,
	"PoolCounterTotal":                 assertions.PoolCounterTotal,
	"ListenOverflow":                   assertions.ListenOverflow,
	"CookieCachePerDestination":        assertions.CookieCachePerDestination,
	"AcceptedIffIssuer":                assertions.AcceptedIffIssuer,
	"ProbeSaid":                        assertions.ProbeSaid,
	"ProbeCookie":                      assertions.ProbeCookie,
	"ProbeReset":                       assertions.ProbeReset,
	// Expectations of package scenarios that need a program (tshark,
	// scapy) the scenario then requires.
	"TsharkAgrees":     scenarios.TsharkAgrees,
	"ScapyProbesAgree": scenarios.ScapyProbesAgree,
	// A key schedule is written as its fields: {Keys: {A: KEY}, Start:
	// {server1: A}, Changes: [{Mark: M, Set: {server1: "B,A"}}]}.
	"PoolOutcomes":  assertions.PoolOutcomes,
	"PoolCounters":  assertions.PoolCounters,
	"CookiesIssued": assertions.CookiesIssued,
}

// NotCallable are exported constructors a file cannot call, and why.
var NotCallable = map[string]string{
	"DissectorAgrees": "takes a Go function (a Dissector); TsharkAgrees is its form with tshark",
}

// registry is a set of constructors a file may call by name: the
// assertions constructors (expectations) or the catalogue's timelines.
type registry struct {
	fns map[string]any
	// not are constructors that cannot be called, and why.
	not map[string]string
	// what names the list, for a name that is not in it.
	what string
}

var (
	expectations = registry{fns: Constructors, not: NotCallable, what: "labfile.Constructors"}
	timelines    = registry{fns: scenarios.Timelines, what: "scenarios.Timelines"}
	boxes        = registry{fns: Middleboxes, what: "labfile.Middleboxes"}
)

// Middleboxes are the middlebox constructors with arguments a file may
// call (`call:` on a middlebox): Custom takes iptables rules as
// {Table, Chain, Spec}; Delay a one-way hold, which `delay:` says too.
var Middleboxes = map[string]any{
	"Custom": middlebox.Custom,
	"Delay":  middlebox.Delay,
	// A behaviour by name with its rules taken away (a self-check).
	"Emptied": scenarios.Emptied,
}

// callMiddlebox builds a middlebox from a call of Middleboxes.
func callMiddlebox(v any) (middlebox.Middlebox, error) {
	return callAs[middlebox.Middlebox](boxes, v, "no middlebox")
}

// callMatcher builds an expectation from a call.
func callMatcher(v any) (types.GomegaMatcher, error) {
	return callAs[types.GomegaMatcher](expectations, v, "no expectation: wrap it (a ConnCheck in Conn or EveryConn, a Step in Dialogue)")
}

// callTimeline builds a timeline from a call of scenarios.Timelines.
func callTimeline(v any) (scenarios.Scripted, error) {
	return callAs[scenarios.Scripted](timelines, v, "no timeline")
}

// callAs builds a T from a call of one of r's constructors; a constructor
// that returns something else is an error: "<its type> is " + isNot.
func callAs[T any](r registry, v any, isNot string) (T, error) {
	res, err := r.call(v)
	if err != nil {
		var zero T
		return zero, err
	}
	t, ok := res.Interface().(T)
	if !ok {
		return t, fmt.Errorf("%s is %s", res.Type(), isNot)
	}
	return t, nil
}

// isCall reports whether m is a call of one of r's constructors rather
// than data (a struct's fields, a map).
func (r registry) isCall(m map[string]any) bool {
	for k := range m {
		if k == "with" {
			continue
		}
		if _, ok := r.fns[k]; !ok {
			return false
		}
	}
	return true
}

// call evaluates one call: {Name: args, with: [methods]}.
func (r registry) call(v any) (reflect.Value, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return reflect.Value{}, fmt.Errorf("a call is a map {Constructor: [arguments]}, got %v", v)
	}
	var name string
	for k := range m {
		if k != "with" {
			if name != "" {
				return reflect.Value{}, fmt.Errorf("a call names one constructor, got %s and %s", name, k)
			}
			name = k
		}
	}
	fn, ok := r.fns[name]
	if !ok {
		if why, no := r.not[name]; no {
			return reflect.Value{}, fmt.Errorf("%s cannot be called from a file: it %s", name, why)
		}
		return reflect.Value{}, fmt.Errorf("no constructor %q (%s lists them)", name, r.what)
	}
	out, err := r.apply(name, reflect.ValueOf(fn), m[name])
	if err != nil {
		return out, err
	}
	with, _ := m["with"].([]any)
	if m["with"] != nil && with == nil {
		return out, fmt.Errorf("%s: with is a list of methods", name)
	}
	for _, w := range with {
		method, args := "", any(nil)
		switch x := w.(type) {
		case string:
			method = x
		case map[string]any:
			if len(x) != 1 {
				return out, fmt.Errorf("%s: a method call is one {Method: [arguments]}", name)
			}
			for k, a := range x {
				method, args = k, a
			}
		default:
			return out, fmt.Errorf("%s: a method is a name or {Method: [arguments]}, got %v", name, w)
		}
		mv := out.MethodByName(method)
		if !mv.IsValid() {
			return out, fmt.Errorf("%s has no method %s", out.Type(), method)
		}
		if out, err = r.apply(name+"."+method, mv, args); err != nil {
			return out, err
		}
	}
	return out, nil
}

// apply calls fn with args (a list, one value, or nothing) converted to
// its parameters.
func (r registry) apply(name string, fn reflect.Value, args any) (reflect.Value, error) {
	var list []any
	switch a := args.(type) {
	case nil:
	case []any:
		list = a
	default:
		list = []any{a}
	}
	t := fn.Type()
	n := t.NumIn()
	if (!t.IsVariadic() && len(list) != n) || (t.IsVariadic() && len(list) < n-1) {
		return reflect.Value{}, fmt.Errorf("%s takes %d arguments (%s), got %d", name, n, params(t), len(list))
	}
	in := make([]reflect.Value, len(list))
	for i, a := range list {
		pt := t.In(min(i, n-1))
		if t.IsVariadic() && i >= n-1 {
			pt = pt.Elem()
		}
		v, err := r.convert(a, pt)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("%s argument %d: %w", name, i+1, err)
		}
		in[i] = v
	}
	out := fn.Call(in)
	if len(out) != 1 {
		return reflect.Value{}, fmt.Errorf("%s returns %d values", name, len(out))
	}
	return out[0], nil
}

func params(t reflect.Type) string {
	var out []string
	for i := range t.NumIn() {
		s := t.In(i).String()
		if t.IsVariadic() && i == t.NumIn()-1 {
			s = "..." + t.In(i).Elem().String()
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	keyType      = reflect.TypeFor[tfo.Key]()
	bytesType    = reflect.TypeFor[[]byte]()
)

// convert turns a decoded YAML value into a value of type t.
func (r registry) convert(a any, t reflect.Type) (reflect.Value, error) {
	if a == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
			return reflect.Zero(t), nil
		}
		return reflect.Value{}, fmt.Errorf("nothing where a %s goes", t)
	}
	if m, ok := a.(map[string]any); ok && t == bytesType {
		// Bytes that are not text: {base64: ...}.
		s, ok := m["base64"].(string)
		if !ok || len(m) != 1 {
			return reflect.Value{}, fmt.Errorf("want bytes as a string or {base64: ...}, got %v", a)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("base64: %w", err)
		}
		return reflect.ValueOf(b), nil
	}
	if m, ok := a.(map[string]any); ok && (!isData(t) || r.isCall(m)) {
		v, err := r.call(m)
		if err != nil {
			return v, err
		}
		if !v.Type().AssignableTo(t) {
			return v, fmt.Errorf("a %s where a %s goes", v.Type(), t)
		}
		return v.Convert(t), nil
	}
	switch t {
	case durationType:
		s, ok := a.(string)
		if !ok {
			return reflect.Value{}, fmt.Errorf("want a duration such as \"1.5s\", got %v", a)
		}
		return valueOf(time.ParseDuration(s))
	case keyType:
		s, _ := a.(string)
		return valueOf(tfo.ParseKey(s))
	case bytesType:
		s, ok := a.(string)
		if !ok {
			return reflect.Value{}, fmt.Errorf("want a string, got %v", a)
		}
		return reflect.ValueOf([]byte(s)), nil
	}
	v := reflect.New(t).Elem()
	switch t.Kind() {
	case reflect.Bool:
		b, ok := a.(bool)
		if !ok {
			return v, fmt.Errorf("want true or false, got %v", a)
		}
		v.SetBool(b)
	case reflect.String:
		s, ok := a.(string)
		if !ok {
			return v, fmt.Errorf("want a string, got %v", a)
		}
		v.SetString(s)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s, ok := a.(string); ok {
			return named(s, t)
		}
		n, ok := integer(a)
		if !ok || v.OverflowInt(n) {
			return v, fmt.Errorf("want an integer for %s, got %v", t, a)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := a.(string); ok {
			return named(s, t)
		}
		n, ok := integer(a)
		if !ok || n < 0 || v.OverflowUint(uint64(n)) {
			return v, fmt.Errorf("want a non-negative integer for %s, got %v", t, a)
		}
		v.SetUint(uint64(n))
	case reflect.Slice:
		list, ok := a.([]any)
		if !ok {
			return v, fmt.Errorf("want a list for %s, got %v", t, a)
		}
		for i, x := range list {
			e, err := r.convert(x, t.Elem())
			if err != nil {
				return v, fmt.Errorf("item %d: %w", i+1, err)
			}
			v = reflect.Append(v, e)
		}
	case reflect.Pointer:
		e, err := r.convert(a, t.Elem())
		if err != nil {
			return v, err
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, nil
	case reflect.Map:
		m, ok := a.(map[string]any)
		if !ok || t.Key().Kind() != reflect.String {
			return v, fmt.Errorf("want a map for %s, got %v", t, a)
		}
		v = reflect.MakeMapWithSize(t, len(m))
		for k, x := range m {
			e, err := r.convert(x, t.Elem())
			if err != nil {
				return v, fmt.Errorf("%s: %w", k, err)
			}
			v.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), e)
		}
	case reflect.Struct:
		m, ok := a.(map[string]any)
		if !ok {
			return v, fmt.Errorf("want a map of %s's fields, got %v", t, a)
		}
		for k, x := range m {
			f, ok := t.FieldByName(k)
			if !ok || !f.IsExported() {
				return v, fmt.Errorf("%s has no field %s (%s)", t, k, fieldNames(t))
			}
			e, err := r.convert(x, f.Type)
			if err != nil {
				return v, fmt.Errorf("%s: %w", k, err)
			}
			v.FieldByIndex(f.Index).Set(e)
		}
	default:
		return v, fmt.Errorf("a %s has no file form", t)
	}
	return v, nil
}

// valueOf is what a parser returned, as a reflect.Value.
func valueOf[T any](v T, err error) (reflect.Value, error) {
	if err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(v), nil
}

// isData reports whether a map in a file is the value of t itself (a
// struct's exported fields, a map, a pointer to either) rather than a
// call.
func isData(t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Map {
		return true
	}
	if t.Kind() != reflect.Struct || t.NumField() == 0 {
		return false
	}
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			return false // built by its constructors only
		}
	}
	return true
}

func fieldNames(t reflect.Type) string {
	var out []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			out = append(out, f.Name)
		}
	}
	return strings.Join(out, ", ")
}

func integer(a any) (int64, bool) {
	switch n := a.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint64:
		return int64(n), n <= 1<<63-1
	case float64:
		return int64(n), float64(int64(n)) == n
	}
	return 0, false
}

// named is the constant of integer type t whose String method says s
// ("client", "server", "syn retransmitted").
func named(s string, t reflect.Type) (reflect.Value, error) {
	if !t.Implements(reflect.TypeFor[fmt.Stringer]()) {
		return reflect.Value{}, fmt.Errorf("want a number for %s, got %q", t, s)
	}
	var names []string
	for i := range 256 {
		v := reflect.New(t).Elem()
		if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
			v.SetUint(uint64(i))
		} else {
			v.SetInt(int64(i))
		}
		name := v.Interface().(fmt.Stringer).String()
		if name == s {
			return v, nil
		}
		if !slices.Contains(names, name) && !strings.Contains(name, "(") {
			names = append(names, name)
		}
	}
	return reflect.Value{}, fmt.Errorf("no %s named %q (%s)", t, s, strings.Join(names, ", "))
}
