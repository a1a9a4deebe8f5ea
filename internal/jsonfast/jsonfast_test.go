package jsonfast

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// jsonSeeds exercise the fast paths and every way out of them.
var jsonSeeds = []string{
	`{"id":"evt_1","key":"order-1","type":"order.paid","data":{"amount":10000,"items":[{"sku":"A","qty":2}],"ok":true,"none":null}}`,
	` { "a" : [ 1 , 2.5 , -0 , 0 , -1e-7 , 1E+21 , 123456789012345 , 1234567890123456789 ] } `,
	`"plain"`, `"esc \" \\ \/ \b \f \n \r \t \u00e9 \u0000 \u2028"`, `"\ud83d\ude00"`, `"\ud83d"`, `"\udc00x"`,
	`"caf` + "\xc3\xa9" + `"`, `"bad ` + "\xff" + ` utf8"`, `"bad \n` + "\xc3" + `\n"`, `"ctl ` + "\x01" + `"`,
	`{"<tag>&":"</script>","k":"\u2029"}`, `{"a":1,"a":2}`, `{}`, `[]`, `[[],{}]`, `null`, `true`, `false`,
	`1e400`, `-1e400`, `1e-400`, `01`, `1.`, `.5`, `-`, `+1`, `0x10`, `Infinity`, `NaN`, `1_0`,
	`{"a":1,}`, `[1,]`, `{"a" 1}`, `{a:1}`, `truex`, `nul`, `[1 2]`, `{"a":1} x`, ``, ` `, `"unterminated`,
	`"\u12"`, `"\x"`, strings.Repeat("[", 600) + strings.Repeat("]", 600),
	strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20),
	`{"big":1.7976931348623157e308,"small":5e-324,"tiny":1e-7,"e":1e21,"f":123e-2}`,
}

// sameValue is reflect.DeepEqual that also tells -0 from 0.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	default:
		return a == b
	}
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var want any
	wantErr := json.Unmarshal(data, &want)
	got, err := Decode(string(data))
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%q: error %v, encoding/json %v", data, err, wantErr)
	}
	if wantErr != nil {
		return
	}
	if !sameValue(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
	}
	checkEncode(t, got)
	checkDecodeNumbers(t, data)
}

// checkDecodeNumbers holds DecodeNumbers to encoding/json's Decoder with
// UseNumber; data is valid JSON.
func checkDecodeNumbers(t *testing.T, data []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var want any
	if err := dec.Decode(&want); err != nil {
		t.Fatalf("%q: the Decoder refuses what Unmarshal took: %v", data, err)
	}
	got, repeated, err := DecodeNumbers(string(data))
	if err != nil {
		t.Fatalf("%q: DecodeNumbers: %v", data, err)
	}
	if !sameValue(got, want) {
		t.Fatalf("%q (numbers):\n got %#v\nwant %#v", data, got, want)
	}
	if want := repeatedName(string(data)); repeated != want {
		t.Fatalf("%q: repeated %v, encoding/json's tokens say %v", data, repeated, want)
	}
}

func TestDecodeNumbersRefuses(t *testing.T) {
	for _, s := range []string{``, `{`, `{"a":1} x`, `{"a":1}{}`, `[1,]`, `01`, "\"\xff"} {
		if _, _, err := DecodeNumbers(s); err == nil {
			t.Errorf("DecodeNumbers(%q) took it", s)
		}
	}
	v, _, err := DecodeNumbers(`{"n":123456789012345678901234567890,"m":1e400}`)
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["n"] != json.Number("123456789012345678901234567890") || m["m"] != json.Number("1e400") {
		t.Errorf("numbers not as written: %#v", m)
	}
}

func checkEncode(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := Append([]byte("prefix"), v)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%#v: error %v, encoding/json %v", v, err, wantErr)
	}
	if wantErr == nil && !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("%#v:\n got %s\nwant prefix%s", v, got, want)
	}
}

func TestDecodeJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds {
		checkDecode(t, []byte(s))
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	type named string
	for _, v := range []any{
		nil, "s", "<&>\u2028\u2029\x00\x1f\x7f\xff", true, 0.0, math.Copysign(0, -1), 1e-7, 1e21, 123.456, 1e20,
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.NaN(), 3, int64(-4), uint8(5), named("n"),
		time.Date(2026, 11, 25, 9, 59, 59, 123, time.UTC), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		map[string]any(nil), []any(nil), map[string]any{}, []any{},
		map[string]any{"b": 1.0, "a": []any{"x", nil, map[string]any{"z": false, "<": "&"}}, "": 0.5},
		map[string]any{"bad": math.NaN()}, []any{map[string]int{"b": 2, "a": 1}, []string{"x"}, struct{ A int }{1}},
	} {
		checkEncode(t, v)
	}
	deep := any(1.0)
	for range 1200 {
		deep = []any{map[string]any{"k": deep}}
	}
	checkEncode(t, deep)
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
	})
}

func BenchmarkDecodeJSON(b *testing.B) {
	body := jsonSeeds[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeJSONFastPath(t *testing.T) {
	for _, s := range []string{jsonSeeds[0], jsonSeeds[1], jsonSeeds[3], `"caf` + "\xc3\xa9" + `"`, jsonSeeds[len(jsonSeeds)-1]} {
		d := fastDecoder{data: s}
		if _, ok := d.document(); !ok {
			t.Errorf("%q left the fast path", s)
		}
	}
}

func TestAppendJSONNumbersAndKeys(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 0.5, -2.5, 1e15 - 1, 1e15, -1e15, 1e15 + 2, 1 << 53,
		1e20, 1e21, 1e-6, 1e-7, 123456.789, math.Nextafter(1e15, 0), -999999999999999} {
		checkEncode(t, f)
		checkEncode(t, []any{f, map[string]any{"x": f}})
	}
	m := map[string]any{}
	for i := range 40 {
		m[strings.Repeat("k", i%7)+string(rune('a'+i%26))+string(rune('A'+i))] = float64(i)
		if i == 3 || i == 11 || i == 12 || i == 13 || i == 39 {
			checkEncode(t, m)
		}
	}
}
