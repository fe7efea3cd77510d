package rangemap

import (
	"errors"
	"reflect"
	"testing"
)

func reps() []Replica { return []Replica{{"n1", true}, {"n2", true}, {"n3", false}} }

func threeRanges(t *testing.T) *Map {
	t.Helper()
	m, err := New([]Descriptor{
		{ID: 5, Start: "m/", End: "t/", Generation: 2, Replicas: reps()},
		{ID: 0, Start: "", End: "m/", Generation: 1, Replicas: reps()},
		{ID: 9, Start: "t/", Generation: 2, Replicas: reps()},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLookupFindsTheRangeOfEveryKey(t *testing.T) {
	m := threeRanges(t)
	for key, want := range map[string]uint64{
		"": 0, "a": 0, "m": 0, "m.": 0, "m/": 5, "m/x": 5, "s\xff": 5, "t/": 9, "zzz": 9, "\xff\xff": 9,
	} {
		if got := m.Lookup(key); got.ID != want || !got.Contains(key) {
			t.Errorf("Lookup(%q) = %s, want range %d", key, got, want)
		}
	}
}

func TestPrefixFindsEveryRangeItTouches(t *testing.T) {
	m := threeRanges(t)
	for prefix, want := range map[string][]uint64{
		"":    {0, 5, 9},
		"a/":  {0},
		"m":   {0, 5}, // "m" < "m/" < "m0": both sides of the boundary
		"m/":  {5},
		"m/a": {5},
		"s":   {5},
		"t":   {5, 9}, // "t" itself, then "t/"...
		"t/":  {9},
		"z":   {9},
	} {
		var got []uint64
		for _, d := range m.Prefix(prefix) {
			got = append(got, d.ID)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Prefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for prefix, want := range map[string]string{"": "", "a": "b", "a/": "a0", "a\xff": "b", "\xff\xff": ""} {
		if got := PrefixEnd(prefix); got != want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestNewRefusesHolesOverlapsAndDuplicates(t *testing.T) {
	for name, rs := range map[string][]Descriptor{
		"none":          nil,
		"hole":          {{ID: 0, End: "b/"}, {ID: 1, Start: "c/"}},
		"overlap":       {{ID: 0, End: "c/"}, {ID: 1, Start: "b/"}},
		"no start":      {{ID: 1, Start: "a/"}},
		"bounded end":   {{ID: 0, End: "z/"}},
		"duplicate ID":  {{ID: 0, End: "b/"}, {ID: 0, Start: "b/"}},
		"empty range":   {{ID: 0, End: "b/"}, {ID: 1, Start: "b/", End: "b/"}, {ID: 2, Start: "b/"}},
		"unbounded mid": {{ID: 0}, {ID: 1, Start: "b/"}},
	} {
		if _, err := New(rs); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: New = %v, want ErrInvalid", name, err)
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

func TestWithSplitKeepsTheCover(t *testing.T) {
	m := threeRanges(t)
	d := m.Lookup("a")
	left, right, err := Split(d, "g/", 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := m.WithSplit(left, right)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Len() != 4 || m2.Lookup("f").ID != 0 || m2.Lookup("g/").ID != 20 || m2.Lookup("l").ID != 20 || m2.Lookup("m/").ID != 5 {
		t.Fatalf("after the split: %v", m2.Ranges())
	}
	if m.Len() != 3 || m.Lookup("g/").ID != 0 {
		t.Fatal("WithSplit changed the map it was called on")
	}
}

func TestCheckKeepWhole(t *testing.T) {
	m := threeRanges(t)
	for prefix, ok := range map[string]bool{"a/": true, "m/": true, "m": false, "": false, "t/": true, "s/": true} {
		if err := m.CheckKeepWhole(prefix); ok != (err == nil) {
			t.Errorf("CheckKeepWhole(%q) = %v, want ok=%v", prefix, err, ok)
		}
	}
}

func TestDescriptorEncodingRoundTrips(t *testing.T) {
	for _, d := range threeRanges(t).Ranges() {
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
