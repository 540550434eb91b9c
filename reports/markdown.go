package reports

import (
	"fmt"
	"math"
	"strings"
)

// MarkdownSummary renders entries as one table per experiment: median with its confidence
// interval, mean, p99 and the number of samples, in human units. Warnings (too few samples
// for a finite interval) are marked and listed.
func MarkdownSummary(entries []Entry) string {
	var b strings.Builder
	b.WriteString("# edgebpf summary\n\nMedians with their 95 % confidence interval (distribution-free, as benchstat computes it); n is the number of samples.\n")
	for _, exp := range experiments(entries) {
		fmt.Fprintf(&b, "\n## %s\n\n| data plane | metric | x | median | 95 %% CI | mean | p99 | n |\n|---|---|---|---|---|---|---|---|\n", exp)
		var notes []string
		for _, e := range entries {
			if e.Experiment != exp {
				continue
			}
			mark := ""
			if len(e.Warnings) > 0 {
				mark = " ⚠"
				notes = append(notes, fmt.Sprintf("- %s %s %s: %s", e.DataPlane, e.Metric, FormatX(string(e.X), e.XUnit), strings.Join(e.Warnings, "; ")))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s%s | %s – %s | %s | %s | %d |\n",
				e.DataPlane, e.Metric, FormatX(string(e.X), e.XUnit), FormatValue(e.Median, e.Unit), mark,
				FormatValue(e.CILo, e.Unit), FormatValue(e.CIHi, e.Unit), FormatValue(e.Mean, e.Unit),
				FormatValue(e.P99, e.Unit), e.N)
		}
		if len(notes) > 0 {
			b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
		}
	}
	return b.String()
}

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
// Gbit/s, bytes to MiB or GiB.
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
	}
	return fmt.Sprintf("%.4g %s", v, unit)
}
