package app

import "github.com/apisessions/apisessions/metrics"

// buildInfo labels apisessions_build_info with what `apisessions version` prints.
func buildInfo() metrics.BuildInfo {
	return metrics.BuildInfo{Version: Version, Commit: commit()}
}
