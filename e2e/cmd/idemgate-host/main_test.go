package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadRoutes(t *testing.T) {
	tests := []struct {
		name, file, wantErr string
		wantPolicy          string // metadata idemgate.route of the first route
	}{
		{name: "route table", file: `[{"name": "checkout", "prefix": "/checkout/", "metadata": {"idemgate": {"route": "payments"}}}, {"prefix": "/"}]`, wantPolicy: "payments"},
		{name: "typo", file: `[{"name": "checkout", "prefix": "/", "metdata": {}}]`, wantErr: `unknown field "metdata"`},
		{name: "not a list", file: `{"prefix": "/"}`, wantErr: "cannot unmarshal object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "routes.json")
			if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			routes, err := readRoutes(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("readRoutes error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(routes) != 2 || routes[0].Name != "checkout" || routes[0].Metadata["idemgate"]["route"] != tt.wantPolicy {
				t.Errorf("routes = %+v", routes)
			}
		})
	}
}
