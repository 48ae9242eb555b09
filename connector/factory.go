// Package anomalyeventsconnector turns the anomaly verdicts that the iforest
// processor attaches to metric datapoints into OTLP log events: one when an
// incident starts, one when it ends and, optionally, one per flagged
// datapoint; with group_by, one incident per entity. As a metrics ->
// metrics connector it emits the anomaly rate per entity instead. It runs
// no model: it reads the attributes the processor wrote, and takes only
// verdicts an iforest processor of this collector issued (trust.go).
package anomalyeventsconnector // import "github.com/otel-iforest/iforest/connector"

import (
	"context"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
	"github.com/otel-iforest/iforest/internal/verdict"
)

// NewFactory returns the factory of the anomalyevents connector: metrics to
// logs (anomaly events) and metrics to metrics (anomaly rate per entity).
func NewFactory() connector.Factory {
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithMetricsToLogs(createMetricsToLogs, metadata.MetricsToLogsStability),
		connector.WithMetricsToMetrics(createMetricsToMetrics, metadata.MetricsToMetricsStability),
	)
}

func createMetricsToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Metrics, error) {
	return newConnector(set.TelemetrySettings, set.ID.String(), cfg.(*Config), next, verdict.Default)
}

func createMetricsToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Metrics, error) {
	return newRateConnector(set.TelemetrySettings, cfg.(*Config), next, verdict.Default)
}
