// Package reports turns typed samples into edgebpf's results directory: tidy raw CSV per
// (experiment, data plane), summary.json and summary.md computed from the raw files alone,
// and meta.json describing the run. It knows nothing of namespaces or data planes: raw data
// first, every summary rebuilt from it.
package reports

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/edgebpf/edgebpf/internal/atomicfile"
	"github.com/edgebpf/edgebpf/internal/parallel"
	"github.com/edgebpf/edgebpf/stats"
)

// Header is the column row of every raw CSV file. Note: architecture.md's first draft had no
// x and x_unit columns; curves (bottleneck rates, CPU phases, client counts) need them to
// stay tidy, one observation per row.
var Header = []string{"experiment", "dataplane", "rep", "seq", "t_s", "x", "x_unit", "metric", "value", "unit"}

// Row is one line of a raw CSV file.
type Row struct {
	Experiment string
	DataPlane  string
	Rep        int
	Seq        int
	T          float64
	X          string
	XUnit      string
	Metric     string
	Value      float64
	Unit       string
}

// RawPath is where the raw samples of one experiment on one data plane live.
func RawPath(dir, experiment, dataplane string) string {
	return filepath.Join(dir, "raw", experiment, dataplane+".csv")
}

// Rows labels samples with their experiment and data plane.
func Rows(experiment, dataplane string, samples []stats.Sample) []Row {
	rows := make([]Row, len(samples))
	for i, s := range samples {
		rows[i] = Row{
			Experiment: experiment, DataPlane: dataplane, Rep: s.Rep, Seq: s.Seq, T: s.T,
			X: s.X, XUnit: s.XUnit, Metric: s.Metric.Name, Value: s.Value, Unit: s.Metric.Unit,
		}
	}
	return rows
}

// WriteRaw writes the samples of one experiment on one data plane atomically, replacing what
// was there.
func WriteRaw(dir, experiment, dataplane string, samples []stats.Sample) error {
	path := RawPath(dir, experiment, dataplane)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create raw directory: %w", err)
	}
	var buf bytes.Buffer
	if err := EncodeRaw(&buf, Rows(experiment, dataplane, samples)); err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.Write(path, buf.Bytes(), 0o644)
}

// EncodeRaw writes rows as CSV with the header. Values are written in their shortest exact
// form so that a report rebuilt from the file sees the same numbers.
func EncodeRaw(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(Header); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	for _, r := range rows {
		rec := []string{r.Experiment, r.DataPlane, strconv.Itoa(r.Rep), strconv.Itoa(r.Seq), f(r.T),
			r.X, r.XUnit, r.Metric, f(r.Value), r.Unit}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// DecodeRaw reads a raw CSV file; name is used in error messages, which give the line.
func DecodeRaw(r io.Reader, name string) ([]Row, error) { return decodeRaw(r, name, 0) }

// decodeRaw is DecodeRaw with room for about hint rows reserved up front.
func decodeRaw(r io.Reader, name string, hint int) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(Header)
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: read header: %w", name, err)
	}
	if !slices.Equal(head, Header) {
		return nil, fmt.Errorf("%s:1: header is %q, want %q", name, strings.Join(head, ","), strings.Join(Header, ","))
	}
	rows := make([]Row, 0, hint)
	// Every field of a record shares one string with the whole line; interning the
	// repetitive fields lets those lines go, which halves the memory of a large file.
	in := map[string]string{}
	intern := func(s string) string {
		if v, ok := in[s]; ok {
			return v
		}
		s = strings.Clone(s)
		in[s] = s
		return s
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", name, err)
		}
		row, err := parseRow(rec)
		if err != nil {
			return rows, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		row.Experiment, row.DataPlane, row.X = intern(row.Experiment), intern(row.DataPlane), intern(row.X)
		row.XUnit, row.Metric, row.Unit = intern(row.XUnit), intern(row.Metric), intern(row.Unit)
		rows = append(rows, row)
	}
}

func parseRow(rec []string) (Row, error) {
	r := Row{Experiment: rec[0], DataPlane: rec[1], X: rec[5], XUnit: rec[6], Metric: rec[7], Unit: rec[9]}
	var err error
	if r.Rep, err = strconv.Atoi(rec[2]); err != nil {
		return r, fmt.Errorf("rep %q is not an integer", rec[2])
	}
	if r.Seq, err = strconv.Atoi(rec[3]); err != nil {
		return r, fmt.Errorf("seq %q is not an integer", rec[3])
	}
	if r.T, err = strconv.ParseFloat(rec[4], 64); err != nil {
		return r, fmt.Errorf("t_s %q is not a number", rec[4])
	}
	if r.Value, err = strconv.ParseFloat(rec[8], 64); err != nil {
		return r, fmt.Errorf("value %q is not a number", rec[8])
	}
	if r.Experiment == "" || r.DataPlane == "" || r.Metric == "" {
		return r, errors.New("experiment, dataplane and metric must not be empty")
	}
	if m, ok := stats.Lookup(r.Metric); ok && m.Unit != r.Unit {
		return r, fmt.Errorf("metric %s has unit %q, want %q", r.Metric, r.Unit, m.Unit)
	}
	return r, nil
}

// ReadRaw reads every raw CSV below dir/raw, in path order. A file that fails to parse is
// reported in the joined error; the rows of the other files are still returned. Files are
// decoded in parallel.
func ReadRaw(dir string) ([]Row, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "raw", "*", "*.csv"))
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	perFile := make([][]Row, len(paths))
	err = parallel.Do(len(paths), runtime.GOMAXPROCS(0), func(i int) error {
		rows, err := readRawFile(paths[i])
		if err != nil {
			return err
		}
		perFile[i] = rows
		return nil
	})
	n := 0
	for _, r := range perFile {
		n += len(r)
	}
	rows := make([]Row, 0, n)
	for _, r := range perFile {
		rows = append(rows, r...)
	}
	return rows, err
}

func readRawFile(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hint := 0
	if fi, err := f.Stat(); err == nil {
		hint = int(fi.Size() / 48) // rows are rarely shorter than 48 bytes
	}
	return decodeRaw(bufio.NewReaderSize(f, 1<<16), path, hint)
}
