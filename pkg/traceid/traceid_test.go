package traceid

import (
	"context"
	"strings"
	"testing"
)

func TestWithFrom(t *testing.T) {
	ctx := context.Background()
	if _, ok := From(ctx); ok {
		t.Fatal("empty context carries an id")
	}
	if id, ok := From(With(ctx, "abc")); !ok || id != "abc" {
		t.Fatalf("From = %q, %v", id, ok)
	}
	if _, ok := From(With(ctx, strings.Repeat("x", MaxLen+1))); ok {
		t.Fatal("an over-long id was accepted")
	}
	if a, b := New(), New(); len(a) != 32 || a == b {
		t.Fatalf("New = %q, %q", a, b)
	}
}
