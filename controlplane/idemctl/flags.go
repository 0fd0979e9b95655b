package main

import "strings"

// stringList is a flag.Value that collects every occurrence of a repeated
// flag, in order.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// headerList is the repeatable --header flag in curl's "Name: value" form.
// Every occurrence selects its header name for the fingerprint; one with a
// value also adds that header to the request, so one flag both says that a
// header counts and what the request carried. A bare "Name" selects a header
// the request does not carry, which fingerprints differently from an empty
// value ("Name:").
type headerList struct {
	names   []string    // selected names, as given
	headers [][2]string // request headers (name, value), in order
}

func (h *headerList) String() string { return strings.Join(h.names, ",") }

func (h *headerList) Set(s string) error {
	name, value, ok := cutHeader(s)
	h.names = append(h.names, name)
	if ok {
		h.headers = append(h.headers, [2]string{name, value})
	}
	return nil
}

// cutHeader splits "Name: value" at the first colon after the name's first
// byte, so that a pseudo-header such as ":authority: example.com" keeps its
// leading colon. The value is kept as given; the fingerprint trims it.
// Names are validated later, with the rest of the selection.
func cutHeader(s string) (name, value string, ok bool) {
	if s == "" {
		return "", "", false
	}
	i := strings.IndexByte(s[1:], ':')
	if i < 0 {
		return s, "", false
	}
	return s[:i+1], s[i+2:], true
}
