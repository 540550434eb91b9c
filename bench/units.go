package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in JSON as a string such as "500ms" or "20s", as
// scenario files and meta.json hold it. The meters' configs use it for their durations.
type Duration time.Duration

// String formats the duration as time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalJSON parses a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"500ms\" or \"20s\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ParseDuration parses a positive Go duration such as "500ms", "20s" or "1m30s".
func ParseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("duration %q is malformed: use a number with a unit, such as 500ms, 20s or 2m", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return v, nil
}

// Rate is a rate in bit/s, written in JSON as a number or a string with an SI suffix:
// "500k", "50M", "1.5G". It is marshalled as a number of bit/s.
type Rate float64

// UnmarshalJSON accepts a number or a suffixed string.
func (r *Rate) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err == nil {
		if f <= 0 || math.IsInf(f, 0) {
			return fmt.Errorf("rate %v must be a positive number of bit/s", f)
		}
		*r = Rate(f)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a rate must be a number of bit/s or a string such as \"50M\"")
	}
	v, err := ParseRate(s)
	if err != nil {
		return err
	}
	*r = Rate(v)
	return nil
}

// MarshalJSON writes the rate as a number of bit/s.
func (r Rate) MarshalJSON() ([]byte, error) { return json.Marshal(float64(r)) }

// ParseRate parses a positive rate in bit/s with an optional k, M or G suffix (powers of
// ten, as iperf3 uses them), e.g. "1M", "250M", "1.5G", "64000".
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(strings.TrimSuffix(t, "bit/s"), "bps")
	mult := 1.0
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			mult, t = 1e3, t[:n-1]
		case 'm', 'M':
			mult, t = 1e6, t[:n-1]
		case 'g', 'G':
			mult, t = 1e9, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("rate %q is malformed: use bit/s with an optional k, M or G suffix, such as 50M", s)
	}
	if v <= 0 {
		return 0, fmt.Errorf("rate %q must be positive", s)
	}
	return v * mult, nil
}

// ParseRates parses a comma-separated list of rates, e.g. "1M,50M,100M".
func ParseRates(list string) ([]float64, error) {
	var out []float64
	for _, part := range strings.Split(list, ",") {
		v, err := ParseRate(part)
		if err != nil {
			return nil, fmt.Errorf("rate list %q: %w", list, err)
		}
		out = append(out, v)
	}
	return out, nil
}
