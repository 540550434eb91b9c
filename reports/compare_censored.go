package reports

import (
	"slices"
	"strings"

	"github.com/edgebpf/edgebpf/stats"
)

// censorNote keeps the drop-point search's censored values and flags from being read as
// regressions: a drop point with a repetition that found no drop up to the cap
// (drop_censored 1) on either side is a lower bound, so its change says nothing about the
// server; drop_censored and client_limited are flags of the search, not measurements. Such a
// row's verdict becomes "same" and its note says why.
func censorNote(ch *Change, k cmpKey, base, nw *cmpSide) {
	switch k.metric {
	case stats.DropCensored.Name, stats.ClientLimited.Name:
		ch.Verdict = VerdictSame
		ch.Note = joinNote("a flag of the drop-point search, not a measurement: no regression signal", ch.Note)
	case stats.DropPoint.Name:
		var sides []string
		for _, s := range []struct {
			name string
			side *cmpSide
		}{{"baseline", base}, {"new run", nw}} {
			if g, ok := s.side.groups[cmpKey{k.exp, k.dp, stats.DropCensored.Name, k.x}]; ok && slices.Contains(g.values, 1) {
				sides = append(sides, s.name)
			}
		}
		if len(sides) == 0 {
			return
		}
		if ch.Verdict != VerdictTooFewReps {
			ch.Verdict = VerdictSame
		}
		ch.Note = joinNote("censored in the "+strings.Join(sides, " and the ")+
			" (no drop up to the search's cap: a lower bound, shown as ≥): not a regression signal", ch.Note)
	}
}

func joinNote(a, b string) string {
	switch {
	case b == "":
		return a
	case a == "":
		return b
	}
	return a + "; " + b
}
