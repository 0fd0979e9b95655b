package policy

import "testing"

func TestClassifyDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	r := &c.Routes[0]
	tests := []struct {
		status int
		want   Outcome
	}{
		{200, Store}, {201, Store}, {204, Store}, {302, Store},
		{400, Store}, {404, Store}, {409, Store}, {422, Store}, {499, Store},
		{408, Release}, {425, Release}, {429, Release},
		// What a proxy answers after the app may have run: never released.
		{502, Indeterminate}, {503, Indeterminate}, {504, Indeterminate},
		// An error after commit is an outcome: stored, never re-executed.
		{500, Store}, {501, Store}, {505, Store}, {599, Store},
		{100, Store}, {0, Store}, {600, Store}, {999, Store}, {-1, Store}, // outside the sets: never re-execute
	}
	for _, tt := range tests {
		if got := r.Classify(tt.status); got != tt.want {
			t.Errorf("Classify(%d) = %v, want %v", tt.status, got, tt.want)
		}
	}
}

func TestParseStatusEntry(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"2xx", 200, 299, true}, {"5XX", 500, 599, true}, {"404", 404, 404, true},
		{"500-504", 500, 504, true}, {"200-599", 200, 599, true}, {"429-429", 429, 429, true},
		{"1xx", 0, 0, false}, {"6xx", 0, 0, false}, {"199", 0, 0, false}, {"600", 0, 0, false},
		{"", 0, 0, false}, {"40", 0, 0, false}, {"4044", 0, 0, false}, {"+40", 0, 0, false},
		{"500-", 0, 0, false}, {"-500", 0, 0, false}, {"504-500", 0, 0, false}, {"5x0", 0, 0, false},
		{"500 - 504", 0, 0, false},
	}
	for _, tt := range tests {
		lo, hi, err := parseStatusEntry(tt.in)
		if (err == nil) != tt.ok || lo != tt.lo || hi != tt.hi {
			t.Errorf("parseStatusEntry(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.ok)
		}
	}
}

func TestOutcomeString(t *testing.T) {
	if Store.String() != "store" || Release.String() != "release" || Indeterminate.String() != "indeterminate" {
		t.Errorf("got %q, %q, %q", Store, Release, Indeterminate)
	}
}
