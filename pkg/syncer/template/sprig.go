package template

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/Masterminds/sprig/v3"
	"sigs.k8s.io/yaml"
)

const (
	letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	digits  = "0123456789"
	ascii   = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
)

// random draws n characters of alphabet uniformly from crypto/rand, as
// sprig's rand functions do, with one read per 64 characters rather than
// one big.Int per character.
func random(alphabet string, n int) (string, error) {
	out := make([]byte, 0, n)
	limit := 256 - 256%len(alphabet) // reject the bytes that would bias it
	var buf [64]byte
	for len(out) < n {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", &funcError{"random: no randomness available"}
		}
		for _, c := range buf {
			if int(c) < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// Sprig functions, as External Secrets Operator's templates use them, by an
// explicit allowlist: a function a later sprig adds is not offered until it
// is reviewed here. Every function taken as sprig wrote it returns at most a
// small constant times its inputs in linear time; the ones whose result can
// be far larger than their inputs (a count, an empty separator, many
// matches) are written here and refuse, before allocating, a result larger
// than maxResult. Structures (list, dict) are charged their full size by
// the budget when built, and no allowed function mutates one, so no
// structure can grow past the budget after it was charged.
//
// Left out on purpose: env, expandenv (the syncer's environment),
// getHostByName (network), the key and certificate generators, bcrypt,
// htpasswd, derivePassword, encryptAES/decryptAES (CPU-heavy), the date
// functions (time zone files), set/unset/merge* (they mutate a structure
// after it was charged), and the rest until someone needs and reviews them.
var sprigAsIs = []string{
	"abbrev", "trunc", "title", "untitle", "substr",
	"trimAll", "trimPrefix", "trimSuffix", "nospace", "initials", "swapcase",
	"snakecase", "camelcase", "kebabcase",
	"contains", "hasPrefix", "hasSuffix",
	"plural", "sha1sum", "sha256sum", "adler32sum",
	"atoi", "int", "int64", "float64",
	"add1", "add", "sub", "div", "mod", "mul", "max", "min",
	"default", "empty", "coalesce", "ternary",
	"list", "dict", "get", "hasKey", "values", "first", "last",
}

// maxResult bounds what one function may build before the budget charges
// it; the budget's MaxWorkBytes bounds them all together.
const maxResult = MaxWorkBytes

// maxPattern bounds a regular expression, which may come from a value.
const maxPattern = 4096

// maxRandom bounds randAlpha and its kind: a password, not a payload.
const maxRandom = 4096

func tooLarge(fn string) error {
	return &funcError{fmt.Sprintf("%s: the result would be larger than %d MiB", fn, maxResult>>20)}
}

func init() {
	all := sprig.TxtFuncMap()
	for _, name := range sprigAsIs {
		fn, ok := all[name]
		if !ok {
			panic("sprig has no function " + name)
		}
		funcs[name] = fn
	}
	for name, alphabet := range map[string]string{
		"randAlphaNum": letters + digits,
		"randAlpha":    letters,
		"randNumeric":  digits,
		"randAscii":    ascii,
	} {
		funcs[name] = func(n int) (string, error) {
			if n < 0 || n > maxRandom {
				return "", &funcError{fmt.Sprintf("%s: the length must be 0 to %d", name, maxRandom)}
			}
			return random(alphabet, n)
		}
	}
	for name, fn := range (template.FuncMap{
		"quote": func(v ...any) (string, error) {
			return quoteAll("quote", v, func(s string) string {
				return string(strconv.AppendQuote(make([]byte, 0, 4*len(s)+2), s))
			})
		},
		"squote": func(v ...any) (string, error) {
			return quoteAll("squote", v, func(s string) string { return "'" + s + "'" })
		},
		"cat": cat,
		// keys, sorted: Sprig's follows map order, so a template ranging
		// over it would write a different Secret at every refresh.
		"keys": func(dicts ...map[string]any) []string {
			var out []string
			for _, d := range dicts {
				for k := range d {
					out = append(out, k)
				}
			}
			sort.Strings(out)
			return out
		},
		"replace": func(old, new, s string) (string, error) {
			n := int64(strings.Count(s, old)) // an empty old matches len(runes)+1 times
			if int64(len(s))+n*int64(len(new)) > maxResult {
				return "", tooLarge("replace")
			}
			return strings.ReplaceAll(s, old, new), nil
		},
		"repeat": func(n int, s string) (string, error) {
			if n < 0 || int64(n)*int64(len(s)) > maxResult {
				return "", tooLarge("repeat")
			}
			return strings.Repeat(s, n), nil
		},
		"indent":    func(n int, s string) (string, error) { return indent("indent", n, s) },
		"nindent":   func(n int, s string) (string, error) { return indent("nindent", n, s) },
		"split":     split,
		"splitList": splitList,
		"join":      join,
		"b32enc":    func(s string) string { return base32.StdEncoding.EncodeToString([]byte(s)) },
		"b32dec": func(s string) (string, error) {
			b, err := base32.StdEncoding.DecodeString(s)
			if err != nil {
				return "", &funcError{"b32dec: the input is not valid base32"}
			}
			return string(b), nil
		},
	}) {
		funcs[name] = fn
	}
}

// costed are the functions that charge the budget for work beyond the
// bytes they are given and return, before doing it.
var costed = map[string]func(b *budget) any{
	// The encoders are charged a multiple of their input's size first:
	// sigs.k8s.io/yaml goes through JSON and a node tree, building some
	// 16 bytes for every byte of the result, JSON a few.
	"toYaml": func(b *budget) any {
		return func(v any) (string, error) {
			if err := b.encodable("toYaml", v, 16); err != nil {
				return "", err
			}
			out, err := yaml.Marshal(v)
			if err != nil {
				return "", &funcError{"toYaml: the input cannot be encoded as YAML"}
			}
			return strings.TrimSuffix(string(out), "\n"), nil
		}
	},
	"toPrettyJson": func(b *budget) any {
		return func(v any) (string, error) {
			if err := b.encodable("toPrettyJson", v, 4); err != nil {
				return "", err
			}
			out, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return "", &funcError{"toPrettyJson: the input cannot be encoded as JSON"}
			}
			return string(out), nil
		}
	},
	"toJson": func(b *budget) any {
		return func(v any) (string, error) {
			if err := b.encodable("toJson", v, 4); err != nil {
				return "", err
			}
			out, err := json.Marshal(v)
			if err != nil {
				return "", &funcError{"toJson: the input cannot be encoded as JSON"}
			}
			return string(out), nil
		}
	},
	"fromJson": func(b *budget) any {
		return func(s string) (any, error) {
			if len(s) > MaxOutputBytes {
				return nil, &funcError{fmt.Sprintf("fromJson: the input is larger than %d MiB", MaxOutputBytes>>20)}
			}
			// Decoding builds up to some 40 bytes for every 2 bytes of
			// input ("0,"); the result is charged its size after.
			if err := b.spend(8 * int64(len(s))); err != nil {
				return nil, err
			}
			var v any
			// json's syntax errors quote the offending character, which
			// is part of a value: only say that it failed.
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				return nil, &funcError{"fromJson: the input is not valid JSON"}
			}
			return v, nil
		}
	},
	"fromYaml": func(b *budget) any {
		return func(s string) (map[string]any, error) {
			// YAML goes through a node tree and JSON, some 160 bytes
			// built for every byte of a dense input.
			if err := b.spend(maxParseCost * int64(len(s))); err != nil {
				return nil, err
			}
			m := map[string]any{}
			// yaml's errors quote the input: only say that it failed.
			if err := yaml.Unmarshal([]byte(s), &m); err != nil {
				return nil, &funcError{"fromYaml: the input is not a YAML mapping"}
			}
			return m, nil
		}
	},
	"regexMatch": func(b *budget) any {
		return func(re, s string) (bool, error) {
			r, err := b.regex("regexMatch", re, s, 0)
			if err != nil {
				return false, err
			}
			return r.MatchString(s), nil
		}
	},
	"regexFind": func(b *budget) any {
		return func(re, s string) (string, error) {
			r, err := b.regex("regexFind", re, s, 0)
			if err != nil {
				return "", err
			}
			return r.FindString(s), nil
		}
	},
	"regexFindAll": func(b *budget) any {
		return func(re, s string, n int) ([]string, error) {
			r, err := b.regex("regexFindAll", re, s, perMatch)
			if err != nil {
				return nil, err
			}
			if err := pieces("regexFindAll", s, n); err != nil {
				return nil, err
			}
			return r.FindAllString(s, n), nil
		}
	},
	"regexSplit": func(b *budget) any {
		return func(re, s string, n int) ([]string, error) {
			r, err := b.regex("regexSplit", re, s, perMatch)
			if err != nil {
				return nil, err
			}
			if err := pieces("regexSplit", s, n); err != nil {
				return nil, err
			}
			return r.Split(s, n), nil
		}
	},
	"regexReplaceAll": func(b *budget) any {
		return func(re, s, repl string) (string, error) {
			r, err := b.regex("regexReplaceAll", re, s, perMatch)
			if err != nil {
				return "", err
			}
			// At most len(s)+1 matches, each adding repl; every $ in repl
			// expands to a submatch, and the matches do not overlap, so
			// each $ adds at most len(s) over all of them.
			n := int64(len(s)) + int64(len(s)+1)*int64(len(repl)) + int64(strings.Count(repl, "$"))*int64(len(s))
			if n > maxResult {
				return "", tooLarge("regexReplaceAll")
			}
			return r.ReplaceAllString(s, repl), nil
		}
	},
	"regexReplaceAllLiteral": func(b *budget) any {
		return func(re, s, repl string) (string, error) {
			r, err := b.regex("regexReplaceAllLiteral", re, s, perMatch)
			if err != nil {
				return "", err
			}
			if int64(len(s))+int64(len(s)+1)*int64(len(repl)) > maxResult {
				return "", tooLarge("regexReplaceAllLiteral")
			}
			return r.ReplaceAllLiteralString(s, repl), nil
		}
	},
}

const (
	// maxParseCost is what fromYaml is charged for each byte it parses.
	maxParseCost = 160
	// perMatch is what the regex functions that collect every match are
	// charged for each byte they search: Go's regexp builds a few slices
	// for every match, and an empty pattern matches at every byte.
	perMatch = 64
)

// regex compiles re, charging the search of s: RE2 runs in time linear in
// s times the size of the pattern, plus perByte for each byte of s.
func (b *budget) regex(fn, re, s string, perByte int64) (*regexp.Regexp, error) {
	r, err := compile(fn, re)
	if err != nil {
		return nil, err
	}
	if err := b.spend(int64(len(s)) * (int64(len(re))/8 + perByte)); err != nil {
		return nil, err
	}
	return r, nil
}

// strval is sprig's: a string as it is, anything else as fmt prints it (a
// structure was charged its size when it was built).
func strval(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case []byte:
		return string(t)
	case nil:
		return ""
	case error:
		return t.Error()
	case fmt.Stringer:
		return t.String()
	}
	return fmt.Sprint(v)
}

func quoteAll(fn string, v []any, q func(string) string) (string, error) {
	ss := make([]string, 0, len(v))
	var n int64
	for _, x := range v {
		if x != nil {
			s := strval(x)
			n += 4*int64(len(s)) + 3 // %q writes at most 4 bytes per byte
			ss = append(ss, s)
		}
	}
	if n > maxResult {
		return "", tooLarge(fn)
	}
	for i, s := range ss {
		ss[i] = q(s)
	}
	return strings.Join(ss, " "), nil
}

func cat(v ...any) (string, error) {
	ss := make([]string, 0, len(v))
	var n int64
	for _, x := range v {
		if x == nil {
			continue
		}
		s := strval(x)
		if n += int64(len(s)) + 1; n > maxResult {
			return "", tooLarge("cat")
		}
		ss = append(ss, s)
	}
	return strings.Join(ss, " "), nil
}

func indent(fn string, n int, s string) (string, error) {
	lines := int64(strings.Count(s, "\n")) + 1
	if n < 0 || int64(len(s))+lines*int64(n)+1 > maxResult {
		return "", tooLarge(fn)
	}
	var sb strings.Builder
	sb.Grow(len(s) + int(lines)*n + 1)
	if fn == "nindent" {
		sb.WriteByte('\n')
	}
	pad := strings.Repeat(" ", n)
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			sb.WriteByte('\n')
		}
		sb.WriteString(pad)
		sb.WriteString(line)
	}
	return sb.String(), nil
}

// sliceCost is what one element of a []string or map costs beside its bytes.
const sliceCost = 64

func count(sep, s string) int64 {
	if sep == "" {
		return int64(utf8.RuneCountInString(s))
	}
	return int64(strings.Count(s, sep)) + 1
}

func splitList(sep, s string) ([]string, error) {
	if count(sep, s)*sliceCost+int64(len(s)) > maxResult {
		return nil, tooLarge("splitList")
	}
	return strings.Split(s, sep), nil
}

// split is sprig's: a dict of _0, _1, ... to the pieces.
func split(sep, s string) (map[string]string, error) {
	if count(sep, s)*sliceCost+int64(len(s)) > maxResult {
		return nil, tooLarge("split")
	}
	parts := strings.Split(s, sep)
	m := make(map[string]string, len(parts))
	for i, p := range parts {
		m["_"+strconv.Itoa(i)] = p
	}
	return m, nil
}

// join is sprig's: the elements of a list as strings, sep between them.
func join(sep string, v any) (string, error) {
	var ss []string
	switch t := v.(type) {
	case []string:
		ss = t
	case []any:
		ss = make([]string, 0, len(t))
		for _, x := range t {
			if x != nil {
				ss = append(ss, strval(x))
			}
		}
	case nil:
		return "", nil
	default:
		return "", &funcError{"join: the second argument is not a list"}
	}
	n := int64(len(ss)) * int64(len(sep))
	for _, s := range ss {
		n += int64(len(s))
	}
	if n > maxResult {
		return "", tooLarge("join")
	}
	return strings.Join(ss, sep), nil
}

func pieces(fn, s string, n int) error {
	m := int64(len(s)) + 1
	if n >= 0 && int64(n) < m {
		m = int64(n)
	}
	if m*sliceCost+int64(len(s)) > maxResult {
		return tooLarge(fn)
	}
	return nil
}

func compile(fn, re string) (*regexp.Regexp, error) {
	if len(re) > maxPattern {
		return nil, &funcError{fmt.Sprintf("%s: the regular expression is longer than %d bytes", fn, maxPattern)}
	}
	r, err := regexp.Compile(re)
	if err != nil {
		// The message quotes the pattern, which may be a value.
		return nil, &funcError{fn + ": the regular expression is not valid (RE2 syntax)"}
	}
	return r, nil
}

// encodable refuses to encode a structure whose encoding would be larger
// than a Secret can hold (escaping and indentation multiply it by a small
// constant at most), and charges factor times its size for the encoding.
func (b *budget) encodable(fn string, v any, factor int64) error {
	n := size(reflect.ValueOf(v), MaxOutputBytes+1)
	if n > MaxOutputBytes {
		return &funcError{fmt.Sprintf("%s: the input is larger than %d MiB", fn, MaxOutputBytes>>20)}
	}
	return b.spend(factor * n)
}

// size estimates the bytes v takes in memory, which is more than it takes
// printed or encoded, counting a shared part every time it is reached, and
// stops counting past limit, so a cycle or a structure sharing itself
// exponentially costs at most limit steps.
func size(v reflect.Value, limit int64) int64 {
	var n int64
	var walk func(x any)
	walk = func(x any) {
		if n > limit {
			return
		}
		switch t := x.(type) {
		case nil:
			n += 16
		case string:
			n += int64(len(t)) + 16
		case []byte:
			n += int64(len(t)) + 24
		case []string:
			n += 24
			for _, s := range t {
				n += int64(len(s)) + 16
			}
		case map[string]string:
			n += 48
			for k, s := range t {
				n += int64(len(k)+len(s)) + 48
			}
		case []any:
			n += 24
			for _, e := range t {
				if n += 16; n > limit {
					return
				}
				walk(e)
			}
		case map[string]any:
			n += 48
			for k, e := range t {
				if n += int64(len(k)) + 48; n > limit {
					return
				}
				walk(e)
			}
		default:
			walkReflect(reflect.ValueOf(x), &n, limit, walk)
		}
	}
	if v.IsValid() && v.CanInterface() {
		walk(v.Interface())
	}
	return n
}

// walkReflect sizes the kinds of structure that no function here builds
// but a template could still meet.
func walkReflect(v reflect.Value, n *int64, limit int64, walk func(any)) {
	switch v.Kind() {
	case reflect.Invalid:
		*n += 16
	case reflect.Interface, reflect.Pointer:
		*n += 16
		if !v.IsNil() && v.Elem().CanInterface() {
			walk(v.Elem().Interface())
		}
	case reflect.String:
		*n += int64(v.Len()) + 16
	case reflect.Slice, reflect.Array:
		*n += 24
		for i := 0; i < v.Len() && *n <= limit; i++ {
			*n += 16
			if v.Index(i).CanInterface() {
				walk(v.Index(i).Interface())
			}
		}
	case reflect.Map:
		*n += 48
		it := v.MapRange()
		for it.Next() && *n <= limit {
			*n += 48
			if it.Key().CanInterface() && it.Value().CanInterface() {
				walk(it.Key().Interface())
				walk(it.Value().Interface())
			}
		}
	case reflect.Struct:
		for i := 0; i < v.NumField() && *n <= limit; i++ {
			*n += 16
			if v.Field(i).CanInterface() {
				walk(v.Field(i).Interface())
			}
		}
	default:
		*n += 16
	}
}

var undefinedFunc = regexp.MustCompile(`function "([^"]+)" not defined`)

// Undefined returns the functions tmpl calls that Veil's templates do not
// offer (at most 16, in the order parsing meets them), so that veil convert
// can name them before a sync fails on them. A template that does not
// parse for another reason yields what was found until then.
func Undefined(tmpl string) []string {
	fm := template.FuncMap{}
	for _, m := range []template.FuncMap{builtins, funcs} {
		for name, fn := range m {
			fm[name] = fn
		}
	}
	stub := func(...any) any { return nil }
	for name := range costed {
		fm[name] = stub
	}
	var out []string
	for len(out) < 16 {
		_, err := template.New("t").Funcs(fm).Parse(tmpl)
		if err == nil {
			break
		}
		m := undefinedFunc.FindStringSubmatch(err.Error())
		if m == nil {
			break
		}
		out = append(out, m[1])
		fm[m[1]] = stub
	}
	return out
}
