package template

import (
	"errors"
	"fmt"
	"reflect"
	"text/template"
	"text/template/parse"
	"time"
)

// The bounds of one Render: every template of one ExternalSecret together.
// Anyone who may write an ExternalSecret writes its templates, and the
// syncer runs them for every namespace, so a template gets a fixed budget
// of work rather than whatever it asks for. Nested ranges, recursion through
// {{template}} and huge printf widths all spend from the same budget, and a
// template over it fails with an error; it is never cut short silently.
const (
	// MaxOutputBytes bounds the rendered data: no Secret can hold more.
	MaxOutputBytes = 1 << 20
	// MaxSteps bounds the actions, list bodies and range iterations run.
	MaxSteps = 250_000
	// MaxWorkBytes bounds the bytes that functions produce, printed or not.
	MaxWorkBytes = 16 << 20
	// MaxDuration bounds the wall time, as a last resort: the other bounds
	// hold on any machine, this one on a slow or busy one.
	MaxDuration = 5 * time.Second
)

// errBudget aborts a render that spent its budget; its message is ours.
var errBudget = errors.New("budget")

type budget struct {
	steps    int
	work     int64
	out      int
	deadline time.Time
	over     string // which bound was hit, for the error
}

func newBudget(d time.Duration) *budget { return &budget{deadline: time.Now().Add(d)} }

func (b *budget) exceeded(what string) error {
	if b.over == "" {
		b.over = what
	}
	return errBudget
}

// step is called at the start of every list of nodes, so every range
// iteration, branch and template invocation costs one.
func (b *budget) step() (string, error) {
	if b.over != "" {
		return "", errBudget // a function that cannot fail spent it
	}
	b.steps++
	if b.steps > MaxSteps {
		return "", b.exceeded(fmt.Sprintf("it runs more than %d steps (loops and template calls)", MaxSteps))
	}
	// Every step looks at the clock (tens of nanoseconds, against a
	// function call of up to milliseconds on a large value), so a render
	// ends at most one call after its deadline.
	if time.Now().After(b.deadline) {
		return "", b.exceeded(fmt.Sprintf("it runs for more than %s", MaxDuration))
	}
	return "", nil
}

func (b *budget) spend(n int64) error {
	b.work += n
	if b.work > MaxWorkBytes {
		return b.exceeded(fmt.Sprintf("its functions produce more than %d MiB", MaxWorkBytes>>20))
	}
	return nil
}

// Write counts the rendered output of every key against MaxOutputBytes.
type boundedBuffer struct {
	b   *budget
	buf []byte
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	w.b.out += len(p)
	if w.b.out > MaxOutputBytes {
		return 0, w.b.exceeded(fmt.Sprintf("its output is larger than %d MiB, the most a Secret can hold", MaxOutputBytes>>20))
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// builtins that can build large strings; they are replaced by budgeted
// versions of themselves (a FuncMap entry overrides a builtin of that name).
var builtins = template.FuncMap{
	"print":    fmt.Sprint,
	"printf":   fmt.Sprintf,
	"println":  fmt.Sprintln,
	"html":     template.HTMLEscaper,
	"js":       template.JSEscaper,
	"urlquery": template.URLQueryEscaper,
}

const stepFunc = "veilStep"

// budgeted returns funcs, and the builtins above, wrapped so that each call
// costs a step and the bytes of a string it returns, plus the step function.
func (b *budget) budgeted(funcs template.FuncMap) template.FuncMap {
	out := template.FuncMap{stepFunc: b.step}
	for _, m := range []template.FuncMap{builtins, funcs} {
		for name, fn := range m {
			out[name] = b.wrap(fn)
		}
	}
	for name, mk := range costed {
		out[name] = b.wrap(mk(b))
	}
	return out
}

var errorType = reflect.TypeFor[error]()

func (b *budget) wrap(fn any) any {
	v := reflect.ValueOf(fn)
	t := v.Type()
	// Only functions that can report an error can be stopped mid-pipeline;
	// the others are charged after the fact and the next step stops them.
	canFail := t.NumOut() == 2 && t.Out(1) == errorType
	return reflect.MakeFunc(t, func(args []reflect.Value) []reflect.Value {
		if _, err := b.step(); err != nil && canFail {
			return []reflect.Value{reflect.Zero(t.Out(0)), reflect.ValueOf(&err).Elem()}
		}
		// Every call also costs the strings it is given: a function that
		// only reads them (sha256sum, contains, regexMatch) still works in
		// proportion to them, and its small result would not pay for it.
		if err := b.spend(argBytes(args)); err != nil && canFail {
			return []reflect.Value{reflect.Zero(t.Out(0)), reflect.ValueOf(&err).Elem()}
		}
		var res []reflect.Value
		if t.IsVariadic() {
			res = v.CallSlice(args)
		} else {
			res = v.Call(args)
		}
		if len(res) > 0 {
			var n int64
			switch res[0].Kind() {
			case reflect.String:
				n = int64(res[0].Len())
			case reflect.Slice, reflect.Map, reflect.Interface, reflect.Pointer:
				// A list or dict is charged everything it reaches, shared
				// parts each time: `list $a $a` costs twice $a, so no
				// structure can stand for more than the budget, however
				// it is later printed or encoded.
				n = size(res[0], MaxWorkBytes-b.work+1)
			}
			if err := b.spend(n); err != nil && canFail {
				return []reflect.Value{reflect.Zero(t.Out(0)), reflect.ValueOf(&err).Elem()}
			}
		}
		return res
	}).Interface()
}

// instrument puts a call of the step function at the start of every list
// of nodes in every template of t: range bodies, branches, defined
// templates. text/template has no hook of its own for this.
func instrument(t *template.Template, funcs template.FuncMap) error {
	probe, err := template.New("step").Funcs(funcs).Parse("{{" + stepFunc + "}}")
	if err != nil {
		return err
	}
	step := probe.Tree.Root.Nodes[0]
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
			n.Nodes = append([]parse.Node{step}, n.Nodes...)
		case *parse.IfNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.RangeNode:
			walk(n.List)
			walk(n.ElseList)
		case *parse.WithNode:
			walk(n.List)
			walk(n.ElseList)
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return nil
}

// argBytes is the bytes of the string arguments of a call, variadic ones
// included; structures were charged when they were built.
func argBytes(args []reflect.Value) int64 {
	var n int64
	var add func(v reflect.Value)
	add = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			n += int64(v.Len())
		case reflect.Interface:
			if !v.IsNil() {
				if e := v.Elem(); e.Kind() == reflect.String || (e.Kind() == reflect.Slice && e.Type().Elem().Kind() == reflect.Uint8) {
					n += int64(e.Len())
				}
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				n += int64(v.Len())
				return
			}
			if k := v.Type().Elem().Kind(); k == reflect.String || k == reflect.Interface {
				for i := 0; i < v.Len(); i++ {
					add(v.Index(i))
				}
			}
		}
	}
	for _, a := range args {
		add(a)
	}
	return n
}
