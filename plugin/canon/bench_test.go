package canon

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"
)

// makeDoc builds a deterministic API-like document of about size bytes:
// order lines with names out of order, decimals, nested objects, a little
// non-ASCII and an escape now and then.
func makeDoc(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"order_id": "ord_8f14e45fceea167a5a36dedd4bea2543", "currency": "EUR", "lines": [`)
	for i := 0; b.Len() < size-120; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"sku": "SKU-%05d", "qty": %d, "unit_price": %d.%02d, "description": "Caf\u00e9 cr\u00e8me n\u00b0%d \"grande\"", "tax": {"rate": 0.%d, "included": %t}, "meta": null}`,
			i, i%7+1, i*13%500, i%100, i, i%25+1, i%2 == 0)
	}
	b.WriteString(`], "customer": {"name": "Zoë Ångström", "email": "zoe@example.com"}, "amount": 1234.50}`)
	return []byte(b.String())
}

var benchSizes = []struct {
	name string
	size int
}{{"1KB", 1 << 10}, {"64KB", 64 << 10}}

// BenchmarkCanonSHA256 measures what the filter does per request: the
// canonical form into a warm buffer, then its SHA-256.
func BenchmarkCanonSHA256(b *testing.B) {
	for _, s := range benchSizes {
		doc := makeDoc(s.size)
		b.Run("idemgate/"+s.name, func(b *testing.B) {
			dst := make([]byte, 0, 2*len(doc))
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				out, err := Append(dst[:0], doc)
				if err != nil {
					b.Fatal(err)
				}
				_ = sha256.Sum256(out)
			}
		})
		b.Run("gowebpki-jcs/"+s.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				out, err := jcs.Transform(doc)
				if err != nil {
					b.Fatal(err)
				}
				_ = sha256.Sum256(out)
			}
		})
	}
}

// BenchmarkNumbers measures one array of numbers per path through
// appendNumber: short decimals (the fast path without floating point),
// doubles with 17 digits and exponents (RFC 8785's form, after checking
// that it denotes the number), and 64-bit ids beyond 2^53 (the exact form).
func BenchmarkNumbers(b *testing.B) {
	cases := []struct{ name, num string }{
		{"decimal", "1234.56"},
		{"double", "0.30000000000000004"},
		{"exponent", "1.5e-9"},
		{"int64-id", "1234567890123456789"},
	}
	for _, c := range cases {
		doc := []byte("[" + strings.Repeat(c.num+",", 63) + c.num + "]")
		b.Run(c.name, func(b *testing.B) {
			dst := make([]byte, 0, 2*len(doc))
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Append(dst[:0], doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
