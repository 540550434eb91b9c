package reports

// The experiments the report knows by name: their tables and figures follow the theses.
// Experiments it does not know are still summarised in the per-experiment tables.
const (
	expLatency     = "latency"
	expLatencyRR   = "latency-rr"
	expJitter      = "jitter"
	expThroughput  = "throughput"
	expBottleneck  = "bottleneck"
	expResources   = "resources"
	expCalibration = "calibration"
	expSLResponse  = "speedlimit-response"
	expSLDropPoint = "speedlimit-droppoint"
	expSLScaling   = "speedlimit-scaling"
	expSLLoad      = "speedlimit-load"
)
