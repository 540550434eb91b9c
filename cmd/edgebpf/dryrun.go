package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgebpf/edgebpf/scenarios"
)

// dryRun prints what `edgebpf run` would run with these options, and how long each
// experiment and the whole run are expected to take on this project's 2-core machine.
func dryRun(out io.Writer, r scenarios.RunOptions) error {
	ests, err := scenarios.DryRun(r)
	if err != nil {
		return usageError("%w", err)
	}
	profile := r.Profile
	if profile == "" {
		profile = "quick"
	}
	fmt.Fprintf(out, "plan (profile %s; estimated for this project's 2-core machine, nothing is run):\n\n", profile)
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "experiment\tmeter\treps\tper repetition\twarm-up\testimate")
	var total time.Duration
	for _, e := range ests {
		var per []string
		for _, s := range e.Subjects {
			if s.Skip != "" {
				per = append(per, s.Name+" skipped")
				continue
			}
			per = append(per, s.Name+" "+roundDuration(s.Rep))
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", e.Experiment, e.Meter, e.Reps, strings.Join(per, ", "), roundDuration(e.Warmup), roundDuration(e.Total))
		total += e.Total
	}
	fmt.Fprintf(w, "total\t\t\t\t\t%s\n", roundDuration(total))
	if err := w.Flush(); err != nil {
		return err
	}
	var why []string
	for _, e := range ests {
		for _, s := range e.Subjects {
			if s.Skip != "" && !slices.Contains(why, s.Skip) {
				why = append(why, s.Skip)
			}
		}
	}
	for _, s := range why {
		fmt.Fprintln(out, "skipped: "+s)
	}
	return nil
}

// roundDuration shortens d for reading: whole seconds, or tenths below ten seconds.
func roundDuration(d time.Duration) string {
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
