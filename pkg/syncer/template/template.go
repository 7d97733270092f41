// Package template renders the data of a target Secret from an
// ExternalSecret's values with Go text/template and a small, closed set of
// functions. Nothing in the set reads the environment, files or the network,
// so a template can only transform the values it is given.
package template

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

// Error is a template that cannot be parsed or evaluated. Its message names
// the Secret key and what is wrong, and never carries a value.
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("template for key %q: %s", e.Key, e.Msg) }

// funcError is returned by the functions below; its message is written here
// and never includes an argument, so it may be shown as it is.
type funcError struct{ msg string }

func (e *funcError) Error() string { return e.msg }

var funcs = template.FuncMap{
	"b64enc": func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"b64dec": func(s string) (string, error) {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return "", &funcError{"b64dec: the input is not valid base64"}
		}
		return string(b), nil
	},
	// toString, as sprig's (which ESO's examples use): a string or bytes
	// as they are, anything else as fmt prints it.
	"toString": func(v any) (string, error) {
		switch t := v.(type) {
		case string:
			return t, nil
		case []byte:
			return string(t), nil
		case nil:
			return "", nil
		}
		return fmt.Sprint(v), nil
	},
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"trim":  strings.TrimSpace,
	// filterPEM keeps the PEM blocks of one type, e.g. the certificates of
	// a bundle that also holds the private key.
	"filterPEM": func(blockType, s string) (string, error) {
		var out bytes.Buffer
		rest := []byte(s)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == blockType {
				if err := pem.Encode(&out, b); err != nil {
					return "", &funcError{"filterPEM: cannot encode a block"}
				}
			}
		}
		if out.Len() == 0 {
			return "", &funcError{fmt.Sprintf("filterPEM: the input has no %q PEM block", blockType)}
		}
		return out.String(), nil
	},
	// filterCertChain keeps the leaf, the intermediates or the root of a
	// certificate chain: `{{ .cert | filterPEM "CERTIFICATE" | filterCertChain "leaf" }}`.
	"filterCertChain": filterCertChain,
}

// Render renders every template of tmpls (Secret key -> template text) with
// the values as its data: `{{ .password }}`, `{{ index . "tls.crt" }}`.
// A key missing from the values is an error rather than "<no value>". All
// the templates together are bounded by the limits in limits.go.
func Render(tmpls map[string]string, values map[string][]byte) (map[string][]byte, error) {
	return render(tmpls, values, newBudget(MaxDuration))
}

func render(tmpls map[string]string, values map[string][]byte, b *budget) (map[string][]byte, error) {
	data := make(map[string]string, len(values))
	for k, v := range values {
		data[k] = string(v)
	}
	keys := make([]string, 0, len(tmpls))
	for k := range tmpls {
		keys = append(keys, k)
	}
	// Sorted, so the same spec always reports the same first error.
	sort.Strings(keys)
	fm := b.budgeted(funcs)
	out := make(map[string][]byte, len(tmpls))
	for _, key := range keys {
		t, err := template.New(key).Funcs(fm).Option("missingkey=error").Parse(tmpls[key])
		if err != nil {
			// Parse errors quote only the template text, which is in the
			// ExternalSecret's spec for anyone who can read it.
			return nil, &Error{Key: key, Msg: err.Error()}
		}
		if err := instrument(t, fm); err != nil {
			return nil, &Error{Key: key, Msg: err.Error()}
		}
		buf := &boundedBuffer{b: b}
		if err := t.Execute(buf, data); err != nil {
			if b.over != "" {
				return nil, &Error{Key: key, Msg: "the template is over Veil's limits: " + b.over}
			}
			return nil, &Error{Key: key, Msg: execMessage(key, err)}
		}
		out[key] = buf.buf
	}
	return out, nil
}

var (
	secretKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
	location     = regexp.MustCompile(`^template: [-._a-zA-Z0-9]+:(\d+:\d+): `)
	missingKey   = regexp.MustCompile(`map has no entry for key "[^"]*"`)
	wrongNumArgs = regexp.MustCompile(`wrong number of args for [a-zA-Z0-9_]+: (got|want) [^:]*$`)
)

// execMessage describes an evaluation error without its value: several of
// text/template's own messages print the value they failed on ("range can't
// iterate over ...", "non-comparable types ..."), so only messages known to
// be safe are kept, and every other one is reduced to where it happened.
func execMessage(key string, err error) string {
	msg := err.Error()
	where := "evaluation failed"
	if m := location.FindStringSubmatch(msg); m != nil {
		where = "evaluation failed at line:column " + m[1]
	}
	var fe *funcError
	switch {
	case errors.As(err, &fe):
		return where + ": " + fe.msg
	case missingKey.MatchString(msg):
		return where + ": " + missingKey.FindString(msg) + " (the values have no such key)"
	case wrongNumArgs.MatchString(msg):
		return where + ": " + wrongNumArgs.FindString(msg)
	default:
		return where + ": a function or action was used on a value of the wrong kind (the message is withheld because it could quote the value)"
	}
}

// Budget is the bounds of one Render, for several renders to share: all
// the rewrite transforms of one ExternalSecret's read spend from one.
type Budget struct{ b *budget }

// NewBudget starts a budget; its wall-time bound runs from now.
func NewBudget() *Budget { return &Budget{b: newBudget(MaxDuration)} }

// RenameKeys renders tmpl once for each name, with the name as .value, as
// External Secrets Operator's dataFrom rewrite transform does: `{{ .value |
// upper }}`, spending from bud. Names are remote key or field names, never
// values.
func RenameKeys(bud *Budget, tmpl string, names []string) (map[string]string, error) {
	b := bud.b
	fm := b.budgeted(funcs)
	t, err := template.New("transform").Funcs(fm).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, &Error{Key: "transform", Msg: err.Error()}
	}
	if err := instrument(t, fm); err != nil {
		return nil, &Error{Key: "transform", Msg: err.Error()}
	}
	out := make(map[string]string, len(names))
	for _, name := range names {
		buf := &boundedBuffer{b: b}
		if err := t.Execute(buf, map[string]string{"value": name}); err != nil {
			if b.over != "" {
				return nil, &Error{Key: "transform", Msg: "the template is over Veil's limits: " + b.over}
			}
			return nil, &Error{Key: "transform", Msg: execMessage("transform", err)}
		}
		out[name] = string(buf.buf)
	}
	return out, nil
}

// Source is one template of a target: Text renders the value of Key
// (External Secrets Operator's templateAs Values), or, with KeysAndValues,
// renders YAML whose keys and string values are all added. Key names where
// the template came from in messages.
type Source struct {
	Key           string
	Text          string
	KeysAndValues bool
}

// RenderSources renders sources in order, a later key replacing an earlier
// one, all under the bounds of one Render.
func RenderSources(sources []Source, values map[string][]byte) (map[string][]byte, error) {
	b := newBudget(MaxDuration)
	out := map[string][]byte{}
	for _, s := range sources {
		r, err := render(map[string]string{s.Key: s.Text}, values, b)
		if err != nil {
			return nil, err
		}
		if !s.KeysAndValues {
			out[s.Key] = r[s.Key]
			continue
		}
		var kv map[string]string
		// yaml's errors quote the input, which holds values: only say
		// that it failed.
		if err := yaml.Unmarshal(r[s.Key], &kv); err != nil {
			return nil, &Error{Key: s.Key, Msg: "templateAs KeysAndValues: the output is not YAML of keys and string values"}
		}
		for k, v := range kv {
			// The keys are rendered, so they may hold values: a key a
			// Secret cannot hold is refused here, unquoted, rather than
			// by kube-apiserver, whose message would quote it.
			if len(k) > 253 || !secretKey.MatchString(k) {
				return nil, &Error{Key: s.Key, Msg: "templateAs KeysAndValues: the output has a key a Secret cannot hold (at most 253 letters, digits, '-', '.' and '_'); the key is not shown because it may hold a value"}
			}
			out[k] = []byte(v)
		}
	}
	return out, nil
}
