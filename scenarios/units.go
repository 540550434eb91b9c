package scenarios

import (
	"time"

	"github.com/edgebpf/edgebpf/bench"
)

// Duration is bench.Duration: a duration written as a string such as "500ms" in scenario
// files.
type Duration = bench.Duration

// Rate is bench.Rate: a rate in bit/s written as a number or a string such as "50M".
type Rate = bench.Rate

// ParseDuration is bench.ParseDuration: a positive Go duration such as "500ms" or "20s".
func ParseDuration(s string) (time.Duration, error) { return bench.ParseDuration(s) }

// ParseRates is bench.ParseRates: a comma-separated list of rates in bit/s, e.g. "1M,50M".
func ParseRates(list string) ([]float64, error) { return bench.ParseRates(list) }

// ParseRate is bench.ParseRate: a rate in bit/s such as "1G" or "500M".
func ParseRate(s string) (float64, error) { return bench.ParseRate(s) }
