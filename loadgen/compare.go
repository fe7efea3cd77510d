package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// WriteComparison prints a Markdown table comparing system a with system b
// from the Result files in dir, named <system>-<workload>-<clients>.json or,
// for repeated runs, <system>-<workload>-<clients>-<run>.json. With several
// runs a row shows each system's median ops/s and median p99, the ratio of
// the medians, and the lowest and highest ratio of runs with the same
// number (which ran back to back), so the noise is on the page.
func WriteComparison(w io.Writer, dir, a, b string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	type row struct {
		workload string
		clients  int
	}
	runs := map[row]map[string]map[int]*Result{} // row → system → run
	for _, f := range files {
		parts := strings.Split(strings.TrimSuffix(filepath.Base(f), ".json"), "-")
		if len(parts) != 3 && len(parts) != 4 {
			continue
		}
		clients, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		run := 0
		if len(parts) == 4 {
			if run, err = strconv.Atoi(parts[3]); err != nil {
				continue
			}
		}
		r, err := ReadResult(f)
		if err != nil {
			return err
		}
		k := row{parts[1], clients}
		if runs[k] == nil {
			runs[k] = map[string]map[int]*Result{}
		}
		if runs[k][parts[0]] == nil {
			runs[k][parts[0]] = map[int]*Result{}
		}
		runs[k][parts[0]][run] = r
	}
	rows := make([]row, 0, len(runs))
	for k := range runs {
		rows = append(rows, k)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].workload != rows[j].workload {
			return rows[i].workload < rows[j].workload
		}
		return rows[i].clients < rows[j].clients
	})
	fmt.Fprintf(w, "| workload | clients | runs | %[1]s ops/s | %[2]s ops/s | ratio | ratio range | %[1]s p99 ms | %[2]s p99 ms | p99 ratio | errors (%[1]s / %[2]s) |\n", a, b)
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
	for _, k := range rows {
		ra, rb := runs[k][a], runs[k][b]
		if len(ra) == 0 || len(rb) == 0 {
			continue
		}
		var ratios []float64
		for run, x := range ra {
			if y := rb[run]; y != nil && y.OpsPerSecond > 0 {
				ratios = append(ratios, x.OpsPerSecond/y.OpsPerSecond)
			}
		}
		spread := "–"
		if len(ratios) > 1 {
			spread = fmt.Sprintf("%.2f–%.2f", slices.Min(ratios), slices.Max(ratios))
		}
		opsA, opsB := median(ra, opsPerSecond), median(rb, opsPerSecond)
		p99A, p99B := median(ra, p99), median(rb, p99)
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.0f | **%.2f×** | %s | %.2f | %.2f | %.2f× | %d / %d |\n",
			k.workload, k.clients, min(len(ra), len(rb)), opsA, opsB, opsA/opsB, spread,
			p99A, p99B, p99A/p99B, errorCount(ra), errorCount(rb))
	}
	return nil
}

// ReadResult reads a Result written with -o json.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func opsPerSecond(r *Result) float64 { return r.OpsPerSecond }
func p99(r *Result) float64          { return r.Latency.P99 }

// median of f over the runs (the mean of the middle two for an even count).
func median(runs map[int]*Result, f func(*Result) float64) float64 {
	var v []float64
	for _, r := range runs {
		v = append(v, f(r))
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func errorCount(runs map[int]*Result) int64 {
	var n int64
	for _, r := range runs {
		for _, c := range r.Errors {
			n += c
		}
	}
	return n
}
