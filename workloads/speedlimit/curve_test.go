package speedlimit

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/workloads/speedlimit/wire"
)

// curveFile is the speed-limit curve the report draws as Weinhold's Fig. 5.2: for every
// car count, the thesis's float formula and what the eBPF-only program answers. The report
// never runs BPF; this test records the program's answers there and fails when they change.
const curveFile = "../../reports/data/speedlimit-curve.csv"

// curveMax is the last car count recorded: past 100 the limit stays at its minimum.
const curveMax = 150

var updateCurve = flag.Bool("update-curve", false, "rewrite "+curveFile+" from the program's answers")

func TestCurveRecordedForTheReport(t *testing.T) {
	r := newTestResponder(t, true)
	in := frame(t, req{})
	var b bytes.Buffer
	b.WriteString("cars,formula_kmh,kernel_kmh\n")
	for c := uint64(0); c <= curveMax; c++ {
		setCars(t, r, c-1) // a request counts itself; for 0 the counter wraps from 2^64-1
		ret, out := run(t, r, in)
		require.Equal(t, uint32(xdpTX), ret, "count %d", c)
		msg, err := wire.Decode(out[42:50])
		require.NoError(t, err)
		fmt.Fprintf(&b, "%d,%s,%d\n", c, strconv.FormatFloat(wire.Limit(c), 'f', 4, 64), msg.Value)
	}
	if *updateCurve {
		require.NoError(t, os.WriteFile(curveFile, b.Bytes(), 0o644))
		return
	}
	want, err := os.ReadFile(curveFile)
	require.NoError(t, err)
	require.Equal(t, string(want), b.String(),
		"the eBPF-only program's answers differ from the report's record; rerun with -update-curve and commit %s", curveFile)
}
