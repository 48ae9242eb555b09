package iforestprocessor

import "go.opentelemetry.io/collector/confmap"

func confmapFrom(m map[string]any) *confmap.Conf { return confmap.NewFromStringMap(m) }
