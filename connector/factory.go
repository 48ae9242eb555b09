// Package anomalyeventsconnector turns the anomaly verdicts that the iforest
// processor attaches to metric datapoints into OTLP log events: one when an
// incident starts, one when it ends and, optionally, one per flagged
// datapoint. It keeps no state and runs no model: it reads the attributes
// the processor wrote.
package anomalyeventsconnector // import "github.com/otel-iforest/iforest/connector"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/otel-iforest/iforest/connector/internal/metadata"
)

// NewFactory returns the factory of the anomalyevents connector (metrics to
// logs).
func NewFactory() connector.Factory {
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithMetricsToLogs(createMetricsToLogs, metadata.MetricsToLogsStability),
	)
}

func createMetricsToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Metrics, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	return newConnector(cfg.(*Config), next, tb, time.Now), nil
}
