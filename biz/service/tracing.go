package service

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/putallkv/putallkv/pkg/tracing"
)

// endSpan ends a stage's span (see package tracing), marked failed with the API code of *err
// when *err is set. A span that is not recording costs nothing here.
func endSpan(span trace.Span, err *error) {
	if *err != nil && span.IsRecording() {
		tracing.Fail(span, codeOf(*err).String(), (*err).Error())
	}
	span.End()
}
