package rangemap

import (
	"errors"
	"reflect"
	"testing"
)

func reps() []Replica { return []Replica{{"n1", true}, {"n2", true}, {"n3", false}} }

func TestPrefixEnd(t *testing.T) {
	for prefix, want := range map[string]string{"": "", "a": "b", "a/": "a0", "a\xff": "b", "\xff\xff": ""} {
		if got := PrefixEnd(prefix); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestSplitRules(t *testing.T) {
	d := Descriptor{ID: 5, Start: "m/", End: "t/", Generation: 2, Replicas: reps()}
	keep := []string{"q/whole/"}
	for key, ok := range map[string]bool{
		"n/":          true,
		"q/whole/":    true, // at the prefix: it stays whole on the right
		"q/whole/a/":  false,
		"q/wholeish/": true,
		"n":           false, // not a path boundary
		"m/":          false, // the range's own start: the left half would be empty
		"a/":          false, // outside
		"t/":          false, // the end belongs to the next range
		"u/":          false,
	} {
		err := CheckSplitKey(d, key, keep)
		if ok != (err == nil) {
			t.Errorf("CheckSplitKey(%q) = %v, want ok=%v", key, err, ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckSplitKey(%q) = %v, not ErrInvalid", key, err)
		}
	}

	left, right, err := Split(d, "p/", 12, keep)
	if err != nil {
		t.Fatal(err)
	}
	wantL := Descriptor{ID: 5, Start: "m/", End: "p/", Generation: 3, Replicas: reps()}
	wantR := Descriptor{ID: 12, Start: "p/", End: "t/", Generation: 3, Replicas: reps()}
	if !reflect.DeepEqual(left, wantL) || !reflect.DeepEqual(right, wantR) {
		t.Fatalf("Split = %s / %s", left, right)
	}
	left.Replicas[0].Node = "changed"
	if d.Replicas[0].Node != "n1" || right.Replicas[0].Node != "n1" {
		t.Fatal("the halves share their replicas with the parent")
	}
	if _, _, err := Split(d, "p/", 5, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Split reusing the parent's ID: %v", err)
	}
}

func TestDescriptorEncodingRoundTrips(t *testing.T) {
	for _, d := range []Descriptor{
		{ID: 0, End: "m/", Generation: 1, Replicas: reps()},
		{ID: 5, Start: "m/", End: "t/", Generation: 2, Replicas: reps()},
		{ID: 9, Start: "t/", Generation: 2},
	} {
		b := AppendDescriptor([]byte("x"), d)
		got, rest, err := DecodeDescriptor(b[1:])
		if err != nil || len(rest) != 0 || !reflect.DeepEqual(got, d) {
			t.Fatalf("round trip of %s: %+v, rest %q, %v", d, got, rest, err)
		}
		for i := range len(b) - 1 {
			if _, _, err := DecodeDescriptor(b[1 : 1+i]); err == nil {
				t.Fatalf("%d-byte truncation of %s decoded", i, d)
			}
		}
	}
}

func FuzzDecodeDescriptor(f *testing.F) {
	f.Add(AppendDescriptor(nil, Descriptor{ID: 3, Start: "a/", End: "b/", Generation: 7, Replicas: reps()}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, rest, err := DecodeDescriptor(b)
		if err != nil {
			return
		}
		again := AppendDescriptor(nil, d)
		if d2, _, err := DecodeDescriptor(again); err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-encoding %+v: %+v, %v", d, d2, err)
		}
		_ = rest
	})
}
