package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chromium finds a headless-capable Chromium, or skips the test.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skip("no Chromium on PATH to render the report in (Debian: apt-get install chromium; .ci/run installs it)")
	return ""
}

// renderDOM loads file in headless Chromium, lets its scripts run and
// returns the page's DOM.
func renderDOM(t *testing.T, browser, file string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--dump-dom", "file://"+file)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "chromium: %s", stderr.String())
	return stdout.String()
}

// has checks that the page holds want, without printing the page when not.
func has(t *testing.T, page, want string, msgAndArgs ...any) {
	t.Helper()
	if !strings.Contains(page, want) {
		assert.Fail(t, fmt.Sprintf("not in the page: %s", want), msgAndArgs...)
	}
}

// TestBacktestReportInBrowser renders the report of a generated fleet with
// injected spikes in a real browser and checks the page: the summary
// numbers are the --json summary's, every series has its plot, and a
// spike's incident is drawn in its plot and listed under it.
func TestBacktestReportInBrowser(t *testing.T) {
	browser := chromium(t)
	cfg, err := backtestConfig("")
	require.NoError(t, err)
	f := newFleet(12, 720)
	f.spikeEvery = 5 // series 0, 5 and 10
	dir := t.TempDir()
	input := writeFile(t, dir, "fleet.jsonl", f.writeOTLP)
	res, verdicts := runBT(t, cfg, btOptions{}, input)
	report := filepath.Join(dir, "report.html")
	var page bytes.Buffer
	require.NoError(t, writeReport(&page, res))
	html := page.Bytes()
	require.NoError(t, os.WriteFile(report, html, 0o644))
	assert.NotRegexp(t, `(?i)(src|href)=["']?(https?:)?//`, string(html), "the report loads nothing from the network")

	var js bytes.Buffer
	require.NoError(t, json.NewEncoder(&js).Encode(res.Summary))
	var summary map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &summary))

	dom := renderDOM(t, browser, report)

	// The summary as the page shows it.
	shown := map[string]float64{}
	for _, m := range regexp.MustCompile(`id="sum-a-([a-z_]+)">([^<]*)<`).FindAllStringSubmatch(dom, -1) {
		v, err := strconv.ParseFloat(strings.ReplaceAll(m[2], ",", ""), 64)
		require.NoError(t, err, "summary %s: %q", m[1], m[2])
		shown[m[1]] = v
	}
	for _, k := range []string{"series", "points", "flagged", "incidents", "incidents_per_series_day"} {
		require.Contains(t, shown, k)
		assert.Equal(t, summary[k], shown[k], "summary %s: page against --json", k)
	}
	assert.Equal(t, 12.0, shown["series"])
	assert.Equal(t, float64(12*720), shown["points"])

	// Every series has its plot, drawn by the page's script, with its values.
	sections := map[int]string{}
	parts := regexp.MustCompile(`<section class="series" id="series-(\d+)"`).FindAllStringSubmatchIndex(dom, -1)
	require.Len(t, parts, 12, "a section per series")
	for k, p := range parts {
		end := len(dom)
		if k+1 < len(parts) {
			end = parts[k+1][0]
		}
		i, _ := strconv.Atoi(dom[p[2]:p[3]])
		sections[i] = dom[p[0]:end]
	}
	for i := range 12 {
		sec, ok := sections[i]
		require.True(t, ok, "series %d has no section", i)
		has(t, sec, fmt.Sprintf(`<svg class="plot" data-series="%d"`, i), "series %d has a plot", i)
		has(t, sec, `<polygon class="val"`, "series %d's plot draws its values", i)
		has(t, sec, fmt.Sprintf("<h3>load.gauge{series=%d}</h3>", i), "series %d is named", i)
	}

	// Each injected spike opened an incident at its first point; the page
	// draws that incident in the series' plot, its first point as flagged,
	// and lists it.
	for _, s := range []int{0, 5, 10} {
		at := fmtNanos(f.time(f.spikeAt(s)).UnixNano())
		v := verdicts[fmt.Sprintf("load.gauge{series=%d}", s)][at]
		require.Equal(t, "started", v.Incident, "series %d: the spike at %s opens an incident", s, at)
		require.NotEmpty(t, v.ID)
		iso := at // as the page writes times
		sec := sections[s]
		has(t, sec, fmt.Sprintf(`<rect class="inc" data-id="%s" data-start="%s"`, v.ID, iso), "series %d: the incident in the plot", s)
		has(t, sec, fmt.Sprintf(`<circle class="flag" data-t="%s"`, iso), "series %d: the spike's first point flagged in the plot", s)
		listed := regexp.MustCompile(fmt.Sprintf(`<tr class="inc-row" data-id="%s" data-start="%s"><td class="n">\d+</td><td>%s</td>`, v.ID, regexp.QuoteMeta(iso), regexp.QuoteMeta(iso)))
		assert.True(t, listed.MatchString(sec), "series %d: the incident %s at %s is not in the list", s, v.ID, iso)
	}

	// Sorted by incidents: the first section has the most.
	first := regexp.MustCompile(`<section class="series" id="series-(\d+)"`).FindStringSubmatch(dom)
	i, _ := strconv.Atoi(first[1])
	for _, st := range res.A.stats {
		assert.LessOrEqual(t, st.incidents, res.A.stats[i].incidents)
	}
}

// TestBacktestCompareReportInBrowser renders a --compare report, with
// values drawn for only some series (--max-plots), and checks both
// configs' numbers and every series' plot and incident lists.
func TestBacktestCompareReportInBrowser(t *testing.T) {
	browser := chromium(t)
	f := newFleet(8, 720)
	f.spikeEvery = 3
	res := strictCompare(t, f, 5)
	report := filepath.Join(t.TempDir(), "report.html")
	var page bytes.Buffer
	require.NoError(t, writeReport(&page, res))
	require.NoError(t, os.WriteFile(report, page.Bytes(), 0o644))
	dom := renderDOM(t, browser, report)

	for _, c := range []struct {
		id   string
		want int64
	}{
		{"sum-a-incidents", res.Summary.Incidents}, {"sum-b-incidents", res.Summary.Compare.Incidents},
		{"sum-a-flagged", res.Summary.Flagged}, {"sum-b-flagged", res.Summary.Compare.Flagged},
	} {
		has(t, dom, fmt.Sprintf(`id="%s">%s<`, c.id, fmtCount(c.want)), c.id)
	}
	assert.Less(t, res.Summary.Compare.Flagged, res.Summary.Flagged)
	for i := range 8 {
		sec := regexp.MustCompile(fmt.Sprintf(`(?s)<section class="series" id="series-%d".*?</section>`, i)).FindString(dom)
		require.NotEmpty(t, sec, "series %d has no section", i)
		has(t, sec, fmt.Sprintf(`<svg class="plot" data-series="%d"`, i), "series %d has a plot", i)
		has(t, sec, `class="inc-list"`, "series %d: incidents under the first config", i)
		has(t, sec, `class="inc-list-b"`, "series %d: incidents under the second config", i)
		if i < 5 {
			has(t, sec, `<polygon class="val"`, "series %d: values drawn", i)
		} else {
			has(t, sec, "values not kept for this series (beyond --max-plots)", "series %d: says why its values are missing", i)
		}
		for _, in := range res.B.stats[i].incs {
			has(t, sec, fmt.Sprintf(`<rect class="laneB" data-start="%s"`, fmtNanos(in.Start)), "series %d: the second config's incident in its lane", i)
		}
		for _, fl := range res.A.stats[i].flags {
			has(t, sec, fmt.Sprintf(`<circle class="flag" data-t="%s"`, fmtNanos(fl.T)), "series %d: flagged point drawn", i)
		}
	}
}
