package template

import (
	"crypto/sha1"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/adler32"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// The sprig functions Veil offers do what External Secrets Operator's
// templates expect of them.
func TestSprigFunctions(t *testing.T) {
	values := map[string][]byte{
		"user":     []byte("app"),
		"password": []byte("s3cret"),
		"csv":      []byte("a,b,c"),
		"yaml":     []byte("host: db.internal\nport: 5432\n"),
		"empty":    nil,
	}
	tests := []struct{ tmpl, want string }{
		{`{{ .empty | default "fallback" }}`, "fallback"},
		{`{{ .user | default "fallback" }}`, "app"},
		{`{{ empty .empty }} {{ empty .user }}`, "true false"},
		{`{{ coalesce .empty .user }}`, "app"},
		{`{{ ternary "y" "n" (eq .user "app") }}`, "y"},
		{`{{ .user | quote }} {{ .user | squote }}`, `"app" 'app'`},
		{`{{ cat .user .password }}`, "app s3cret"},
		{`{{ replace "3" "e" .password }}`, "secret"},
		{`{{ trimPrefix "s3" .password }}{{ trimSuffix "et" .password }}{{ trimAll "s" .password }}`, "cret" + "s3cr" + "3cret"},
		{`{{ contains "cr" .password }}{{ hasPrefix "s3" .password }}{{ hasSuffix "x" .password }}`, "truetruefalse"},
		{`{{ join "-" (splitList "," .csv) }}`, "a-b-c"},
		{`{{ (split "," .csv)._1 }}`, "b"},
		{`{{ repeat 3 "ab" }}`, "ababab"},
		{`{{ "a\nb" | indent 2 }}|{{ "a\nb" | nindent 2 }}`, "  a\n  b|\n  a\n  b"},
		{`{{ .user | title }} {{ "App" | untitle }} {{ "a b" | nospace }} {{ "hello world" | initials }} {{ "aB" | swapcase }}`, "App app ab hw Ab"},
		{`{{ "AppUser" | snakecase }} {{ "app_user" | camelcase }} {{ "AppUser" | kebabcase }}`, "app_user AppUser app-user"},
		{`{{ trunc 2 .user }} {{ abbrev 5 "abcdefgh" }} {{ substr 1 3 .user }}`, "ap ab... pp"},
		{`{{ .user | b32enc }} {{ .user | b32enc | b32dec }}`, "MFYHA=== app"},
		{`{{ .user | sha1sum }}`, fmt.Sprintf("%x", sha1.Sum([]byte("app")))},
		{`{{ .user | sha256sum }}`, fmt.Sprintf("%x", sha256.Sum256([]byte("app")))},
		{`{{ .user | adler32sum }}`, fmt.Sprint(adler32.Checksum([]byte("app")))},
		{`{{ plural "one" "many" 2 }}`, "many"},
		{`{{ add 1 2 3 }} {{ sub 5 2 }} {{ mul 2 3 }} {{ div 7 2 }} {{ mod 7 2 }} {{ max 1 9 3 }} {{ min 4 2 8 }} {{ add1 1 }}`, "6 3 6 3 1 9 2 2"},
		{`{{ atoi "42" }} {{ int "7" }} {{ int64 "8" }} {{ float64 "1.5" }}`, "42 7 8 1.5"},
		{`{{ $l := list "x" "y" "z" }}{{ first $l }}{{ last $l }}{{ len $l }}`, "xz3"},
		{`{{ $d := dict "k" .user }}{{ get $d "k" }} {{ hasKey $d "k" }} {{ keys $d }} {{ values $d }}`, "app true [k] [app]"},
		{`{{ keys (dict "b" 1 "c" 2 "a" 3) (dict "d" 4) }}`, "[a b c d]"},
		{`{{ (fromYaml .yaml).host }}`, "db.internal"},
		{`{{ dict "host" .user | toYaml }}`, "host: app"},
		{`{{ dict "a" 1 | toPrettyJson }}`, "{\n  \"a\": 1\n}"},
		{`{{ regexMatch "^s[0-9]" .password }} {{ regexFind "[0-9]+" .password }} {{ regexFindAll "[a-z]" .password 2 }} {{ regexSplit "3" .password -1 }}`, "true 3 [s c] [s cret]"},
		{`{{ regexReplaceAll "([a-z])3" .password "${1}e" }} {{ regexReplaceAllLiteral "3" .password "$1" }}`, "secret s$1cret"},
		{`{{ len (randAlphaNum 24) }}{{ len (randAlpha 3) }}{{ len (randNumeric 2) }}{{ len (randAscii 1) }}`, "24321"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			out, err := Render(map[string]string{"k": tc.tmpl}, values)
			if err != nil {
				t.Fatal(err)
			}
			got := string(out["k"])
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Functions left out fail at parse time, naming the function.
func TestSprigExcluded(t *testing.T) {
	for _, name := range []string{
		"env", "expandenv", "getHostByName", "genPrivateKey", "genCA", "genSelfSignedCert",
		"genSignedCert", "buildCustomCert", "derivePassword", "bcrypt", "htpasswd",
		"encryptAES", "decryptAES", "now", "date", "set", "unset", "merge", "mergeOverwrite",
	} {
		_, err := Render(map[string]string{"k": "{{ " + name + " }}"}, nil)
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), `function "`+name+`" not defined`) {
			t.Errorf("%s: got %v, want a template error saying it is not defined", name, err)
		}
	}
}

// Every function, called with arguments chosen to make it build far more
// than its inputs (huge counts, empty separators, 1 MiB inputs, structures
// sharing themselves), either succeeds within the budget or fails with an
// error, and never allocates far past the budget on the way.
func TestSprigAdversarial(t *testing.T) {
	const mib = 1 << 20
	values := map[string][]byte{
		"big": []byte(strings.Repeat("a", mib)),
		"nl":  []byte(strings.Repeat("\n", mib)),
		"ctl": []byte(strings.Repeat("\x00", mib)),
		"num": []byte("12"),
	}
	tmpls := []string{
		`{{ repeat 1000000000 .big }}`,
		`{{ repeat 16777216 "a" }}`,
		`{{ range 100000 }}{{ $x := repeat 1000 "ab" }}{{ end }}`,
		`{{ replace "" .big .big }}`,
		`{{ replace "a" "bbbbbbbbbbbbbbbbbbbb" .big }}`,
		`{{ range 100 }}{{ $x := replace "a" "bb" $.big }}{{ end }}`,
		`{{ indent 1000000 .nl }}`,
		`{{ nindent 100 .nl }}`,
		`{{ range 100 }}{{ $x := nindent 8 $.nl }}{{ end }}`,
		`{{ splitList "" .big }}`,
		`{{ (split "a" .big)._0 }}`,
		`{{ range 1000 }}{{ $x := splitList "\n" (substr 0 10000 $.nl) }}{{ end }}`,
		`{{ join .big (list 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18) }}`,
		`{{ $l := list .big }}{{ range 100 }}{{ $l = list $l $l }}{{ end }}{{ toJson $l }}`,
		`{{ $d := dict "a" .num }}{{ range 64 }}{{ $d = dict "x" $d "y" $d }}{{ end }}{{ $d }}`,
		`{{ $d := dict "a" .num }}{{ range 64 }}{{ $d = dict "x" $d "y" $d }}{{ end }}{{ toYaml $d }}{{ toPrettyJson $d }}`,
		`{{ $l := list .big .big .big }}{{ range 100 }}{{ printf "%v" $l }}{{ end }}`,
		`{{ $l := list .big .big }}{{ range 10000 }}{{ $x := first (list $l $l) }}{{ $y := last $l }}{{ $z := get (dict "k" $l) "k" }}{{ $v := values (dict "k" $l) }}{{ $k := keys (dict "k" $l) }}{{ $h := hasKey (dict "k" $l) "k" }}{{ end }}`,
		`{{ $l := list .big .big }}{{ range 10000 }}{{ $x := default $l $.num }}{{ $y := coalesce $l }}{{ $z := ternary $l $l true }}{{ $e := empty $l }}{{ end }}`,
		`{{ quote .ctl .ctl .ctl .ctl .ctl }}`,
		`{{ range 100 }}{{ $x := squote $.ctl }}{{ $y := quote $.ctl }}{{ end }}`,
		`{{ cat .big .big .big .big .big .big .big .big .big .big .big .big .big .big .big .big .big }}`,
		`{{ regexFindAll "" .big -1 }}`,
		`{{ regexSplit "" .big -1 }}`,
		`{{ range 100 }}{{ $x := regexFindAll "a" $.big 100000 }}{{ end }}`,
		`{{ regexReplaceAll "" .big "$0$0$0$0" }}`,
		`{{ regexReplaceAllLiteral "a" .big "xxxxxxxxxxxxxxxxxxxxxxxx" }}`,
		`{{ range 100 }}{{ $x := regexReplaceAll "(a)" $.big "$1$1" }}{{ end }}`,
		`{{ regexMatch (repeat 5000 "a") .big }}`,
		`{{ range 100 }}{{ $x := regexMatch "(a*)*b" $.big }}{{ $y := regexFind "(a|aa)*c" $.big }}{{ end }}`,
		`{{ randAlphaNum 1000000000 }}{{ randAlpha -1 }}`,
		`{{ range 100000 }}{{ $x := randAscii 4096 }}{{ $y := randNumeric 4096 }}{{ $z := randAlpha 4096 }}{{ end }}`,
		`{{ toYaml (list .big .big) }}`,
		`{{ $l := splitList "," (repeat 20000 "a,") }}{{ range 1000 }}{{ $x := toYaml $l }}{{ $y := toPrettyJson $l }}{{ $z := toJson $l }}{{ end }}`,
		`{{ fromYaml "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: [*g,*g,*g,*g,*g,*g,*g,*g,*g]" }}`,
		`{{ $d := fromYaml "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]" }}{{ range 1000 }}{{ $x := fromYaml "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]" }}{{ end }}`,
		`{{ fromYaml (repeat 2000000 "a: [") }}`,
		`{{ fromYaml (printf "%s: x" .big) }}`,
		`{{ fromJson (repeat 300000 "[") }}`,
		`{{ fromJson (printf "[%s0]" (repeat 524000 "0,")) }}`,
		`{{ fromYaml (printf "a:\n%s" (repeat 262000 "- 0\n")) }}`,
		`{{ fromYaml (printf "a: [%s0]" (repeat 524000 "0,")) }}`,
		`{{ range 1000 }}{{ $x := fromJson (printf "[%s0]" (repeat 100000 "0,")) }}{{ end }}`,
		`{{ range 100 }}{{ $x := b32enc $.big }}{{ $y := b64enc $.big }}{{ $z := b32dec $.big }}{{ $w := b64dec $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := upper $.big }}{{ $y := lower $.big }}{{ $z := title $.big }}{{ $u := untitle $.big }}{{ $s := swapcase $.big }}{{ $t := trim $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := snakecase $.big }}{{ $y := camelcase $.big }}{{ $z := kebabcase $.big }}{{ $n := nospace $.big }}{{ $i := initials $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := trimAll "b" $.big }}{{ $y := trimPrefix "a" $.big }}{{ $z := trimSuffix "a" $.big }}{{ $c := contains $.big $.big }}{{ $p := hasPrefix $.big $.big }}{{ $s := hasSuffix $.big $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := substr 0 1000000000 $.big }}{{ $y := trunc -1 $.big }}{{ $z := abbrev 3 $.big }}{{ $p := plural $.big $.big 2 }}{{ end }}`,
		`{{ range 1000 }}{{ $x := sha1sum $.big }}{{ $y := sha256sum $.big }}{{ $z := adler32sum $.big }}{{ $s := toString $.big }}{{ $j := toJson $.big }}{{ end }}`,
		`{{ div 1 0 }}`,
		`{{ mod 1 0 }}`,
		`{{ add 99999999999 1 }}{{ sub 1 2 }}{{ mul 99999999999 99999999999 }}{{ max 1 2 }}{{ min 1 2 }}{{ add1 1 }}`,
		`{{ atoi .big }}{{ int .big }}{{ int64 .big }}{{ float64 .big }}`,
		`{{ range 1000 }}{{ $x := filterPEM "CERTIFICATE" $.big }}{{ end }}`,
		`{{ filterCertChain "leaf" .big }}`,
		// External Secrets Operator's own functions: inputs over their
		// size bounds, and junk, many times (esofuncs_test.go has the
		// archives with huge iteration counts).
		`{{ pkcs12key .big }}`,
		`{{ pkcs12keyPass .big (substr 0 1000 .ctl) }}`,
		`{{ pkcs12cert (substr 0 200000 .ctl) }}`,
		`{{ range 1000 }}{{ $x := pkcs12certPass "x" (substr 0 200000 $.big) }}{{ end }}`,
		`{{ pemToPkcs12 .big .big }}`,
		`{{ pemToPkcs12Pass (substr 0 200000 .big) .big .big }}`,
		`{{ fullPemToPkcs12 (substr 0 200000 .nl) .big }}`,
		`{{ fullPemToPkcs12Pass .big .big .big }}`,
		`{{ pemTruststoreToPKCS12 .big }}`,
		`{{ range 1000 }}{{ $x := pemTruststoreToPKCS12Pass (substr 0 200000 $.nl) $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := certSANs (substr 0 200000 $.big) }}{{ end }}`,
		`{{ jwkPublicKeyPem .big }}{{ jwkPrivateKeyPem .big }}`,
		`{{ range 1000 }}{{ $x := jwkPrivateKeyPem (printf "{\"kty\":\"RSA\",\"n\":\"%s\"}" (substr 0 200000 $.big)) }}{{ end }}`,
		`{{ rsaDecrypt "RSA-OAEP" "SHA256" .big .big }}`,
		`{{ range 100000 }}{{ $x := rsaDecrypt "None" "SHA1" $.big $.big }}{{ end }}`,
		`{{ range 1000 }}{{ $x := hexdec (substr 0 200000 $.big) }}{{ end }}{{ hexdec (repeat 500000 "00") }}`,
	}
	// Every function is exercised.
	all := strings.Join(tmpls, "\n")
	var names []string
	for name := range funcs {
		names = append(names, name)
	}
	for name := range costed {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !regexp.MustCompile(`[ ($]` + name + ` `).MatchString(all) {
			t.Errorf("no adversarial template calls %s", name)
		}
	}
	for _, tmpl := range tmpls {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		out, err := Render(map[string]string{"k": tmpl}, values)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		name := tmpl
		if len(name) > 60 {
			name = name[:60]
		}
		if alloc > 4*MaxWorkBytes {
			t.Errorf("%s: allocated %d MiB, more than 4x the %d MiB budget", name, alloc>>20, MaxWorkBytes>>20)
		}
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Errorf("%s: not an *Error: %T %v", name, err, err)
			}
		} else if len(out["k"]) > MaxOutputBytes {
			t.Errorf("%s: %d bytes of output", name, len(out["k"]))
		}
		t.Logf("%s: %d MiB allocated, %s, err=%v", name, alloc>>20, took.Round(time.Millisecond), err)
	}
}

func TestUndefined(t *testing.T) {
	got := Undefined(`{{ .a | getHostByName | default "x" }}{{ env "HOME" }}{{ .b | quote | getHostByName }}{{ regexMatch "a" .c }}`)
	if strings.Join(got, ",") != "getHostByName,env" {
		t.Errorf("got %v, want [getHostByName env]", got)
	}
	if got := Undefined(`{{ .a | sha256sum | fromJson | toYaml }}`); len(got) != 0 {
		t.Errorf("got %v, want none", got)
	}
}

// TestDeadlineEveryStep: a render past its deadline stops at its next step,
// whatever the step is (a loop iteration or a function call), with the
// budget's error, so no function can carry a render on past the wall-time
// bound by more than one call. The deadline is in the past, so no timing
// is involved.
func TestDeadlineEveryStep(t *testing.T) {
	for _, tmpl := range []string{
		`{{ range 3 }}x{{ end }}`,
		`{{ sha256sum .v }}`,
		`{{ .v | upper | lower }}`,
	} {
		_, err := render(map[string]string{"k": tmpl}, map[string][]byte{"v": []byte("value")}, newBudget(-time.Second))
		var te *Error
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "runs for more than") {
			t.Errorf("%s past its deadline: %v, want the wall-time bound's error", tmpl, err)
		}
	}
}
