package reports

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// CompareFormats are the output formats of WriteComparison.
var CompareFormats = []string{"text", "csv", "json", "markdown"}

// WriteComparison writes c in one of CompareFormats. Text and markdown list the guard's
// differences (when forced) and warnings above the table; csv has the rows only; json is
// the Comparison itself.
func WriteComparison(w io.Writer, c *Comparison, format string) error {
	switch format {
	case "text", "":
		return writeCompareText(w, c)
	case "csv":
		return writeCompareCSV(w, c)
	case "json":
		b, err := json.MarshalIndent(c, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case "markdown":
		return writeCompareMarkdown(w, c)
	}
	return fmt.Errorf("unknown format %q: choose from %s", format, strings.Join(CompareFormats, ", "))
}

func (ch *Change) noSamples() bool { return ch.BaseN == 0 || ch.NewN == 0 }

func signedPct(f float64) string { return fmt.Sprintf("%+.2f %%", f*100) }

// changeString is the change with its interval: "+18.92 % [+16.10, +21.70]".
func (ch *Change) changeString() string {
	switch {
	case ch.noSamples():
		return "–"
	case ch.Change == nil:
		return "from 0"
	case ch.ChangeLo == nil || ch.ChangeHi == nil:
		return signedPct(*ch.Change)
	}
	return fmt.Sprintf("%s [%+.2f, %+.2f]", signedPct(*ch.Change), *ch.ChangeLo*100, *ch.ChangeHi*100)
}

func (ch *Change) pString() string {
	if ch.noSamples() {
		return "–"
	}
	if ch.P < 0.001 {
		return "<0.001"
	}
	return strconv.FormatFloat(ch.P, 'f', 3, 64)
}

func (ch *Change) mdcString() string {
	switch {
	case ch.noSamples():
		return "–"
	case ch.MDC == nil:
		return "∞"
	}
	return fmt.Sprintf("%.1f %%", *ch.MDC*100)
}

func (ch *Change) cvString() string {
	if ch.noSamples() {
		return "–"
	}
	f := func(cv *float64) string {
		if cv == nil {
			return "?"
		}
		return strconv.FormatFloat(*cv*100, 'f', 1, 64)
	}
	return f(ch.BaseCV) + "/" + f(ch.NewCV) + " %"
}

func (ch *Change) verdictString() string {
	if ch.Note == "" {
		return ch.Verdict
	}
	return ch.Verdict + " (" + ch.Note + ")"
}

func sideString(median float64, unit string, reps int) string {
	return FormatValue(median, unit) + " r=" + strconv.Itoa(reps)
}

func (ch *Change) cells() []string {
	return []string{ch.Experiment, ch.DataPlane, ch.Metric, FormatX(string(ch.X), ch.XUnit),
		sideString(ch.BaseRepMedian, ch.Unit, ch.BaseReps), sideString(ch.NewRepMedian, ch.Unit, ch.NewReps),
		ch.changeString(), ch.pString(), ch.mdcString(), ch.cvString(), strings.Join(ch.Flags, ","), ch.verdictString()}
}

var compareHeader = []string{"experiment", "dataplane", "metric", "x", "base", "new", "change [CI]", "p", "MDC", "CV base/new", "flags", "verdict"}

func (c *Comparison) footer() string {
	unchanged := len(c.Changes) - c.Regressions - c.UnfitRegressions - c.Improvements - c.TooFewReps
	return fmt.Sprintf("%d compared: %d regressions, %d improvements, %d unchanged, %d with too few reps; %d unfit for gating (%d noisy regressions not gated on)\n"+
		"(threshold %s, alpha %g; per repetition: a regression is p < alpha and a change beyond the threshold, "+
		"the change's interval is at %s; noisy: a side's CV above %s, insensitive: MDC above the threshold)",
		len(c.Changes), c.Regressions, c.Improvements, unchanged, c.TooFewReps, c.Unfit, c.UnfitRegressions,
		pct(c.Threshold), c.Alpha, pct(1-c.Alpha), pct(c.MaxCV))
}

// preamble lists what the guard found: differences compared anyway, warnings.
func (c *Comparison) preamble(w io.Writer, bullet string) {
	if c.RelativeTo != "" {
		fmt.Fprintf(w, "%srelative to %s: each repetition's value divided by %s's same repetition\n\n", bullet, c.RelativeTo, c.RelativeTo)
	}
	if c.Forced {
		fmt.Fprintf(w, "%sforced: compared although the runs differ in %s\n", bullet, strings.Join(c.Differences, "; "))
	}
	for _, s := range c.Warnings {
		fmt.Fprintf(w, "%swarning: %s\n", bullet, s)
	}
	if c.Forced || len(c.Warnings) > 0 {
		fmt.Fprintln(w)
	}
}

func writeCompareText(w io.Writer, c *Comparison) error {
	fmt.Fprintf(w, "baseline: %s\nnew:      %s\n\n", c.Base, c.New)
	c.preamble(w, "")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(compareHeader, "\t"))
	for i := range c.Changes {
		fmt.Fprintln(tw, strings.Join(c.Changes[i].cells(), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, side := range []struct {
		name string
		list []Entity
	}{{"baseline", c.OnlyBase}, {"new run", c.OnlyNew}} {
		if len(side.list) > 0 {
			fmt.Fprintf(w, "\nonly in the %s (%d):\n", side.name, len(side.list))
			for _, e := range side.list {
				fmt.Fprintf(w, "  %s\n", e)
			}
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", c.footer())
	return err
}

func writeCompareMarkdown(w io.Writer, c *Comparison) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# edgebpf compare\n\nbaseline `%s`, new `%s`\n\n", c.Base, c.New)
	c.preamble(&b, "- ")
	t := Table{Header: compareHeader}
	for i := range c.Changes {
		cells := c.Changes[i].cells()
		if c.Changes[i].Verdict == VerdictRegression {
			cells[len(cells)-1] = "**" + cells[len(cells)-1] + "**"
		}
		t.Rows = append(t.Rows, cells)
	}
	md := t.Markdown()
	b.WriteString(md[strings.Index(md, "|"):])
	for _, side := range []struct {
		name string
		list []Entity
	}{{"baseline", c.OnlyBase}, {"new run", c.OnlyNew}} {
		if len(side.list) > 0 {
			fmt.Fprintf(&b, "\nOnly in the %s:\n\n", side.name)
			for _, e := range side.list {
				fmt.Fprintf(&b, "- %s\n", e)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s\n", strings.ReplaceAll(c.footer(), "\n", " "))
	_, err := io.WriteString(w, b.String())
	return err
}

// compareCSVHeader keeps the columns of the first compare CSV in their places and appends
// the repetition statistics after them.
var compareCSVHeader = []string{"experiment", "dataplane", "metric", "unit", "better", "x", "x_unit",
	"base_n", "base_median", "new_n", "new_median", "change", "p", "verdict", "note",
	"aggregate", "base_reps", "new_reps", "base_rep_median", "new_rep_median", "base_cv", "new_cv",
	"change_lo", "change_hi", "confidence", "min_p", "mdc", "flags"}

func writeCompareCSV(w io.Writer, c *Comparison) error {
	cw := csv.NewWriter(w)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	opt := func(v *float64) string {
		if v == nil {
			return ""
		}
		return f(*v)
	}
	_ = cw.Write(compareCSVHeader)
	for _, ch := range c.Changes {
		_ = cw.Write([]string{ch.Experiment, ch.DataPlane, ch.Metric, ch.Unit, ch.Better, string(ch.X), ch.XUnit,
			strconv.Itoa(ch.BaseN), f(ch.BaseMedian), strconv.Itoa(ch.NewN), f(ch.NewMedian), opt(ch.Change), f(ch.P), ch.Verdict, ch.Note,
			ch.Aggregate, strconv.Itoa(ch.BaseReps), strconv.Itoa(ch.NewReps), f(ch.BaseRepMedian), f(ch.NewRepMedian),
			opt(ch.BaseCV), opt(ch.NewCV), opt(ch.ChangeLo), opt(ch.ChangeHi), f(ch.Confidence), f(ch.MinP), opt(ch.MDC),
			strings.Join(ch.Flags, " ")})
	}
	for _, side := range []struct {
		verdict string
		list    []Entity
	}{{"only-base", c.OnlyBase}, {"only-new", c.OnlyNew}} {
		for _, e := range side.list {
			row := make([]string, len(compareCSVHeader))
			row[0], row[1], row[2], row[5], row[6], row[13] = e.Experiment, e.DataPlane, e.Metric, string(e.X), e.XUnit, side.verdict
			_ = cw.Write(row)
		}
	}
	cw.Flush()
	return cw.Error()
}
