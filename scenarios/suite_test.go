package scenarios

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/edgebpf/edgebpf/bench"
)

func TestBuiltinSuite(t *testing.T) {
	s := Builtin()
	assert.Equal(t, []string{"latency", "latency-rr", "jitter", "throughput", "bottleneck", "resources", "calibration",
		"speedlimit-response", "speedlimit-droppoint", "speedlimit-scaling", "speedlimit-load", "scale"}, s.Names())
	// The full profile carries the thesis's parameters (reference.md §3).
	e, err := s.Select([]string{"latency"})
	require.NoError(t, err)
	p, err := e[0].Plan("full", Overrides{})
	require.NoError(t, err)
	assert.Equal(t, 30, p.Reps)
	pp := p.Params.(bench.ConnectConfig)
	assert.Equal(t, 20, pp.Count)
	assert.Equal(t, 15, pp.Keep)
	assert.Equal(t, Duration(time.Second), pp.Interval)

	e, _ = s.Select([]string{"bottleneck"})
	p, err = e[0].Plan("full", Overrides{})
	require.NoError(t, err)
	sp := p.Params.(bench.UDPSweepConfig)
	assert.Equal(t, Duration(60*time.Second), sp.PerRate)
	assert.Equal(t, Rate(1e6), sp.Rates[0])
	assert.Contains(t, sp.Rates, Rate(500e6))
}

func TestOverrides(t *testing.T) {
	e, err := Builtin().Select([]string{"bottleneck", "resources", "latency"})
	require.NoError(t, err)
	o := Overrides{Reps: 4, Duration: 3 * time.Second, Rates: []float64{1e6, 2e9}}
	p, err := e[0].Plan("quick", o)
	require.NoError(t, err)
	assert.Equal(t, 4, p.Reps)
	assert.Equal(t, []Rate{1e6, 2e9}, p.Params.(bench.UDPSweepConfig).Rates)
	assert.Equal(t, Duration(3*time.Second), p.Params.(bench.UDPSweepConfig).PerRate)

	p, err = e[1].Plan("quick", o)
	require.NoError(t, err)
	assert.Equal(t, Duration(time.Second), p.Params.(bench.ResourcesConfig).Load, "resources split the duration in thirds")

	p, err = e[2].Plan("full", o)
	require.NoError(t, err)
	assert.Equal(t, 3, p.Params.(bench.ConnectConfig).Count, "3 s of 1 s pings")
	assert.Equal(t, 3, p.Params.(bench.ConnectConfig).Keep)
}

func TestSelect(t *testing.T) {
	s := Builtin()
	all, err := s.Select([]string{"all"})
	require.NoError(t, err)
	assert.Len(t, all, 10)
	for _, e := range all {
		assert.False(t, e.Optional, "all leaves out optional experiments: %s", e.Name)
	}
	none, err := s.Select(nil)
	require.NoError(t, err)
	assert.Equal(t, all, none)
	named, err := s.Select([]string{"calibration", "latency"})
	require.NoError(t, err, "an optional experiment runs when named")
	assert.Equal(t, "calibration", named[0].Name)
	assert.True(t, named[0].Optional)
	only := &Suite{Experiments: []Experiment{{Name: "x", Optional: true}}}
	_, err = only.Select([]string{"all"})
	assert.ErrorContains(t, err, "every experiment is optional: name them, from x")
	_, err = s.Select([]string{"latncy"})
	assert.ErrorContains(t, err, `unknown experiment "latncy": choose from latency, latency-rr, jitter`)
	_, err = s.Select([]string{"latency", "latency"})
	assert.ErrorContains(t, err, "twice")
	assert.ErrorContains(t, CheckProfile("fast"), "choose from smoke, ci, quick, full")
}

func TestCalibrationPlan(t *testing.T) {
	e, err := Builtin().Select([]string{"calibration"})
	require.NoError(t, err)
	p, err := e[0].Plan("smoke", Overrides{})
	require.NoError(t, err)
	assert.Equal(t, "reference-tools", p.Meter)
	assert.Equal(t, 1, p.Reps)
	assert.Equal(t, bench.ReferenceConfig{Rounds: 1, Duration: Duration(time.Second), PingCount: 50}, p.Params)
	p, err = e[0].Plan("full", Overrides{Duration: 3 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, bench.ReferenceConfig{Rounds: 10, Duration: Duration(3 * time.Second), JitterInterval: Duration(250 * time.Millisecond)}, p.Params, "--duration sets each run's length")
	p, err = e[0].Plan("quick", Overrides{})
	require.NoError(t, err)
	assert.Equal(t, bench.ReferenceConfig{Rounds: 3, Duration: Duration(5 * time.Second), JitterDuration: Duration(4 * time.Second),
		JitterInterval: Duration(250 * time.Millisecond), JitterRepeat: 3}, p.Params, "quick: three jitter pairs of 4 s per round")
	p, err = e[0].Plan("quick", Overrides{Duration: 2 * time.Second})
	require.NoError(t, err)
	assert.Zero(t, p.Params.(bench.ReferenceConfig).JitterDuration, "--duration sets the jitter streams' length too")
	_, err = e[0].Plan("quick", Overrides{Duration: 2500 * time.Millisecond})
	assert.ErrorContains(t, err, "not a whole number of seconds")
}

func TestParseCustomSuite(t *testing.T) {
	f, err := os.Open("testdata/custom.json")
	require.NoError(t, err)
	defer f.Close()
	s, err := Parse(f, "custom.json")
	require.NoError(t, err)
	assert.Equal(t, []string{"ping"}, s.Names())
	// custom.json still names its meter tcpping, as files written before the rename do.
	assert.Equal(t, "connect-rtt", s.Experiments[0].Meter, "an old meter name loads as the current one")
}

// TestMeterAliases checks that every former meter name still loads, as the meter it was
// renamed to, and that the experiment and its plan (so meta.json) carry the current name.
func TestMeterAliases(t *testing.T) {
	for old, current := range meterAliases {
		_, ok := meters[current]
		require.True(t, ok, "alias %s names meter %s", old, current)
		_, clash := meters[old]
		assert.False(t, clash, "alias %s is no meter's current name", old)
	}
	f, err := os.Open("testdata/allparams.json") // written with the former names
	require.NoError(t, err)
	defer f.Close()
	s, err := Parse(f, "allparams.json")
	require.NoError(t, err)
	got := map[string]string{}
	for _, e := range s.Experiments {
		p, err := e.Plan("smoke", Overrides{})
		require.NoError(t, err)
		assert.Equal(t, e.Meter, p.Meter)
		got[e.Name] = p.Meter
	}
	want := map[string]string{}
	for _, e := range Builtin().Experiments {
		want[e.Name] = e.Meter
	}
	assert.Equal(t, want, got, "the same experiments name the same meters, old file or new")
}

func TestParseRejects(t *testing.T) {
	cases := map[string]struct{ json, want string }{
		"unknown field":   {`{"experiments":[{"name":"x","meter":"connect-rtt","bogus":1}]}`, `unknown field "bogus"`},
		"unknown meter":   {`{"experiments":[{"name":"x","meter":"ping","profiles":{}}]}`, `unknown meter "ping": choose from connect-rtt, reference-tools, request-response, resources, scale, speedlimit-droppoint`},
		"no profile":      {`{"experiments":[{"name":"x","meter":"connect-rtt","profiles":{}}]}`, "has no profiles: give it at least one of smoke, ci, quick, full"},
		"unknown profile": {`{"experiments":[{"name":"x","meter":"connect-rtt","profiles":{"fast":{"reps":1,"params":{"count":1,"interval":"1s"}}}}]}`, `unknown profile "fast"`},
		"syntax position": {"{\"experiments\": [\n  {\"name\": \"x\",, }]}", "s.json:2:16: invalid character ','"},
		"type position":   {"{\n  \"experiments\": 5}", "s.json:2:18: json: cannot unmarshal number"},
		"field position":  {"{\"experiments\": [\n {\"nam\": 1}]}", `s.json:2:3: json: unknown field "nam"`},
		"truncated":       {"{\"experiments\": [\n", "s.json:2:1: unexpected EOF"},
		"bad duration":    {profiles(`{"count":1,"interval":"soon"}`), `duration "soon" is malformed`},
		"bad param":       {profiles(`{"count":-1,"interval":"1s"}`), "count"},
		"unknown param":   {profiles(`{"count":1,"interval":"1s","colour":"red"}`), `unknown field "colour"`},
		"bad rate":        {`{"experiments":[{"name":"x","meter":"udp-jitter","profiles":{"smoke":{"reps":1,"params":{"rate":"fast","duration":"1s"}}}}]}`, `rate "fast" is malformed`},
		"no experiments":  {`{"experiments":[]}`, "no experiments"},
		"not json":        {`experiments: []`, "invalid character"},
		"bad name":        {`{"experiments":[{"name":"a b","meter":"connect-rtt"}]}`, "is invalid"},
		"bad placement":   {`{"experiments":[{"name":"x","meter":"connect-rtt","placement":"near","profiles":{"smoke":{"reps":1,"params":{"count":1,"interval":"1s"}}}}]}`, `placement "near" is unknown: give "apart" or leave it out`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.json), "s.json")
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.True(t, strings.HasPrefix(err.Error(), "s.json"), "errors name the file: %v", err)
		})
	}
}

// TestBuiltinPlacement checks which built-in experiments keep their client and server apart
// by default: those whose round trips or tools depend on the threads' placement.
func TestBuiltinPlacement(t *testing.T) {
	var apart []string
	for _, e := range Builtin().Experiments {
		if e.Placement == PlacementApart {
			apart = append(apart, e.Name)
		}
		p, err := e.Plan(slices.Collect(maps.Keys(e.Profiles))[0], Overrides{})
		require.NoError(t, err)
		assert.Equal(t, e.Placement, p.Placement, e.Name)
	}
	assert.ElementsMatch(t, []string{"calibration", "latency-rr"}, apart)
}

func TestSubsetOfProfiles(t *testing.T) {
	one := `{"experiments":[
		{"name":"rtt","meter":"connect-rtt","profiles":{"ci":{"reps":4,"params":{"count":5,"interval":"10ms"}}}},
		{"name":"tp","meter":"tcp-throughput","profiles":{"smoke":{"reps":1,"params":{"duration":"1s","interval":"250ms"}}}}]}`
	s, err := Parse(strings.NewReader(one), "one.json")
	require.NoError(t, err, "an experiment may define one profile")
	assert.Equal(t, []string{"ci"}, s.Experiments[0].ProfileNames())

	got, err := s.SelectProfile(nil, "ci")
	require.NoError(t, err)
	require.Len(t, got, 1, "all under ci keeps the experiments that have ci")
	assert.Equal(t, "rtt", got[0].Name)

	_, err = s.SelectProfile([]string{"tp"}, "ci")
	assert.EqualError(t, err, "experiment tp has no ci profile: use --profile smoke")
	_, err = s.SelectProfile(nil, "full")
	assert.EqualError(t, err, "no experiment has a full profile: choose another profile")
}

func TestBuiltinCIProfile(t *testing.T) {
	got, err := Builtin().SelectProfile([]string{"all"}, "ci")
	require.NoError(t, err)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
		p, err := e.Plan("ci", Overrides{})
		require.NoError(t, err)
		assert.GreaterOrEqual(t, p.Reps, 4, "%s: Mann-Whitney needs 4 repetitions a side for alpha 0.05", e.Name)
	}
	assert.Equal(t, []string{"latency", "latency-rr", "throughput", "resources"}, names, "the headline metrics: RTT, throughput, CPU")
}

func TestOverridesMustApply(t *testing.T) {
	s := Builtin()
	exps, err := s.Select([]string{"latency"})
	require.NoError(t, err)
	assert.EqualError(t, Overrides{Rates: []float64{1e6}}.checkOverrides(s, exps), "--rates does not apply to latency: it applies to bottleneck")
	assert.NoError(t, Overrides{Duration: 1}.checkOverrides(s, exps))
	exps, err = s.Select([]string{"latency", "bottleneck"})
	require.NoError(t, err)
	assert.NoError(t, Overrides{Rates: []float64{1e6}}.checkOverrides(s, exps), "applies to one of the chosen")
}

func profiles(params string) string {
	p := `{"reps":1,"params":` + params + `}`
	return `{"experiments":[{"name":"x","meter":"connect-rtt","profiles":{"smoke":` + p + `,"quick":` + p + `,"full":` + p + `}}]}`
}

func TestParseRates(t *testing.T) {
	got, err := ParseRates("1M, 50M,1.5G,64000,500k")
	require.NoError(t, err)
	assert.Equal(t, []float64{1e6, 50e6, 1.5e9, 64000, 500e3}, got)
	for _, bad := range []string{"", "1M,,2M", "-5M", "0", "fastM", "NaN", "1T"} {
		_, err := ParseRates(bad)
		assert.Error(t, err, bad)
	}
	_, err = ParseDuration("-1s")
	assert.ErrorContains(t, err, "positive")
	_, err = ParseDuration("10")
	assert.ErrorContains(t, err, "malformed")
}
