package scenarios

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/edgebpf/edgebpf/netsetup"
	"github.com/edgebpf/edgebpf/reports"
)

// reserveName is a file the runner fills in the results directory at the start and removes
// when a write fails for want of space, or at the end: meta.json can then still be brought up
// to date on a full disk instead of keeping an older state.
const reserveName = netsetup.ResultsReserve

// reserveSize is room for meta.json (a quick run of the whole suite writes about 30 KiB).
const reserveSize = 64 << 10

// outDir is a run's results directory with its space reserve.
type outDir struct {
	dir     string
	reserve string // "" once released
}

// reserveSpace allocates the reserve; a directory without room for it cannot hold a run.
func reserveSpace(dir string) (*outDir, error) {
	path := filepath.Join(dir, reserveName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("results directory %s: %w", dir, err)
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, reserveSize)
	if errors.Is(err, unix.EOPNOTSUPP) { // some file systems cannot preallocate: write zeros
		_, err = f.Write(make([]byte, reserveSize))
	}
	err = errors.Join(err, f.Close())
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("results directory %s has no room for a run (%d KiB reserved for meta.json failed): %w", dir, reserveSize>>10, err)
	}
	return &outDir{dir: dir, reserve: path}, nil
}

// release removes the reserve.
func (o *outDir) release() {
	if o.reserve != "" {
		_ = os.Remove(o.reserve)
		o.reserve = ""
	}
}

// writeMeta writes meta.json; when that fails it frees the reserve and tries once more.
func (o *outDir) writeMeta(m *reports.Meta) error {
	err := reports.WriteMeta(o.dir, m)
	if err != nil && o.reserve != "" {
		o.release()
		err = reports.WriteMeta(o.dir, m)
	}
	return err
}

// missing lists the files a report should have written that are not in the directory.
func (o *outDir) missing(r *reports.Report) []string {
	want := []string{"summary.json", "summary.md", "index.html"}
	if r != nil {
		for _, f := range r.Figures {
			want = append(want, filepath.Join(reports.PlotsDir, f.Name+".png"), filepath.Join(reports.PlotsDir, f.Name+".svg"))
		}
	}
	var out []string
	for _, w := range want {
		if _, err := os.Stat(filepath.Join(o.dir, w)); err != nil {
			out = append(out, w)
		}
	}
	return out
}
