package stats

import "fmt"

// EWMA returns the exponentially weighted moving average of a series: the first output
// is the first input, and out[i] = alpha*values[i] + (1-alpha)*out[i-1]. A larger alpha
// follows the series more closely; alpha 1 returns a copy of it. Alpha must be in
// (0, 1]. The series is used as given, so a NaN in it makes every later output NaN.
func EWMA(values []float64, alpha float64) ([]float64, error) {
	if !(alpha > 0 && alpha <= 1) {
		return nil, fmt.Errorf("ewma: alpha %v is outside (0, 1]", alpha)
	}
	out := make([]float64, len(values))
	for i, v := range values {
		if i == 0 {
			out[i] = v
			continue
		}
		out[i] = alpha*v + (1-alpha)*out[i-1]
	}
	return out, nil
}
