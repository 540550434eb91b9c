package reports

import (
	"fmt"
	"math"
)

// FormatX renders a curve's x with its unit, e.g. "250 Mbit/s" or "load"; "" when there is
// no x.
func FormatX(x, unit string) string {
	if x == "" {
		return ""
	}
	var f float64
	if _, err := fmt.Sscan(x, &f); err == nil && unit != "phase" {
		return FormatValue(f, unit)
	}
	return x
}

// FormatValue scales a base-unit value for reading: seconds to ms or µs, bit/s to Mbit/s or
// Gbit/s, bytes to MiB or GiB, req/s to k req/s.
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	switch unit {
	case "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return fmt.Sprintf("%.1f µs", v*1e6)
		case a < 1:
			return fmt.Sprintf("%.3f ms", v*1e3)
		}
		return fmt.Sprintf("%.3f s", v)
	case "bit/s":
		switch a := math.Abs(v); {
		case a >= 1e9:
			return fmt.Sprintf("%.2f Gbit/s", v/1e9)
		case a >= 1e6:
			return fmt.Sprintf("%.1f Mbit/s", v/1e6)
		case a >= 1e3:
			return fmt.Sprintf("%.1f kbit/s", v/1e3)
		}
		return fmt.Sprintf("%.0f bit/s", v)
	case "bytes":
		switch a := math.Abs(v); {
		case a >= 1<<30:
			return fmt.Sprintf("%.2f GiB", v/(1<<30))
		case a >= 1<<20:
			return fmt.Sprintf("%.1f MiB", v/(1<<20))
		}
		return fmt.Sprintf("%.0f B", v)
	case "percent":
		return fmt.Sprintf("%.2f %%", v)
	case "count":
		return fmt.Sprintf("%.0f", v)
	case "req/s":
		switch a := math.Abs(v); {
		case a >= 1e6:
			return fmt.Sprintf("%.2f M req/s", v/1e6)
		case a >= 1e4:
			return fmt.Sprintf("%.1f k req/s", v/1e3)
		}
		return fmt.Sprintf("%.0f req/s", v)
	}
	return fmt.Sprintf("%.4g %s", v, unit)
}
