package reports

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/subject"
)

// Report is what Build wrote: the summaries, the theses' tables, the figures and the
// figures it had no data for.
type Report struct {
	Dir     string
	Entries []Entry
	Tables  []*Table
	Figures []Figure
	Skipped []SkippedFigure
}

// PlotsDir is where Build writes the figures, relative to the results directory.
const PlotsDir = "plots"

// Build rebuilds everything a results directory shows from its meta.json and raw/ alone:
// summary.json, summary.md, plots/*.png and *.svg, and index.html. A run copied from
// another machine can be reported anywhere.
//
// What can be reported is written even when part of the input is bad: a malformed raw file
// is left out and named, with its line, in the returned error, which is then an
// *InputError. A directory without meta.json is not a results directory (*InputError,
// nothing written).
func Build(dir string, subjects subject.Catalogue) (*Report, error) {
	if _, err := ReadMeta(dir); err != nil {
		return nil, &InputError{err}
	}
	ds, err := LoadDataset(dir, subjects)
	if err != nil {
		return nil, &InputError{err}
	}
	r := &Report{Dir: dir, Entries: ds.Entries, Tables: ThesisTables(ds)}
	var errs []error
	if ds.Err != nil {
		errs = append(errs, &InputError{ds.Err})
	}
	if err := writeSummaries(ds, r.Tables); err != nil {
		return r, errors.Join(append(errs, err)...)
	}
	figs, skips, ferr := Figures(ds)
	r.Figures, r.Skipped = figs, skips
	if ferr != nil {
		errs = append(errs, ferr)
	}
	if err := writePlots(dir, figs); err != nil {
		errs = append(errs, err)
	}
	page, err := HTML(ds, r, errs)
	if err != nil {
		errs = append(errs, err)
	} else if err := atomicfile.Write(filepath.Join(dir, "index.html"), page, 0o644); err != nil {
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// writePlots writes every figure as PNG and SVG under dir/plots and removes the figures a
// previous report wrote that this one no longer has.
func writePlots(dir string, figs []Figure) error {
	pd := filepath.Join(dir, PlotsDir)
	if err := os.MkdirAll(pd, 0o755); err != nil {
		return fmt.Errorf("create plots directory: %w", err)
	}
	keep := map[string]bool{}
	var errs []error
	for _, f := range figs {
		for ext, data := range map[string][]byte{".png": f.PNG, ".svg": f.SVG} {
			keep[f.Name+ext] = true
			if err := atomicfile.Write(filepath.Join(pd, f.Name+ext), data, 0o644); err != nil {
				errs = append(errs, err)
			}
		}
	}
	old, _ := os.ReadDir(pd)
	for _, e := range old {
		n := e.Name()
		if !e.IsDir() && !keep[n] && (strings.HasSuffix(n, ".png") || strings.HasSuffix(n, ".svg")) {
			if err := os.Remove(filepath.Join(pd, n)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
