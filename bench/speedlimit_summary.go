package bench

import (
	"github.com/edgebpf/edgebpf/stats"
)

// SpeedLimitSummary condenses speed-limit samples for a person: the response times'
// percentiles, the clients' median of the thesis's aggregate, the timeouts and the achieved
// rate. The CLI prints it; experiments keep the raw samples instead.
type SpeedLimitSummary struct {
	Requests        int     `json:"requests"`
	Timeouts        int     `json:"timeouts"`
	P50             float64 `json:"p50_s"`
	P90             float64 `json:"p90_s"`
	P99             float64 `json:"p99_s"`
	Max             float64 `json:"max_s"`
	Mean            float64 `json:"mean_s"`
	ClientMedian    float64 `json:"client_median_s"`     // median over clients of their median
	ClientStddev    float64 `json:"client_stddev_s"`     // median over clients of their stddev
	MeanRequestTime float64 `json:"mean_request_time_s"` // median over clients of time for M / M
	AchievedRate    float64 `json:"achieved_rate"`       // req/s
	ClientCPU       float64 `json:"client_cpu_percent"`
	ClientCPUUser   float64 `json:"client_cpu_user_percent"`
	Loss            float64 `json:"loss_percent,omitempty"`
}

// SummarizeSpeedLimit condenses the samples of one SpeedLimitResponse or SpeedLimitLoad run
// (one X).
func SummarizeSpeedLimit(samples []stats.Sample) SpeedLimitSummary {
	var s SpeedLimitSummary
	by := map[string][]float64{}
	for _, x := range samples {
		by[x.Metric.Name] = append(by[x.Metric.Name], x.Value)
	}
	rt := stats.Summarize(by[stats.ResponseTime.Name])
	s.Requests, s.P50, s.P90, s.P99, s.Max, s.Mean = rt.N, rt.Median, rt.P90, rt.P99, rt.Max, rt.Mean
	med := func(name string) float64 {
		if len(by[name]) == 0 {
			return 0
		}
		return stats.Summarize(by[name]).Median
	}
	s.ClientMedian, s.ClientStddev, s.MeanRequestTime = med(stats.ClientMedian.Name), med(stats.ClientStddev.Name), med(stats.MeanRequestTime.Name)
	for _, v := range by[stats.Timeouts.Name] {
		s.Timeouts += int(v)
	}
	s.AchievedRate, s.ClientCPU, s.ClientCPUUser = med(stats.AchievedRate.Name), med(stats.ClientCPU.Name), med(clientCPUUser.Name)
	s.Loss = med(stats.Loss.Name)
	return s
}
