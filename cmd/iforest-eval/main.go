// Command iforest-eval evaluates the isolation forest of internal/forest and
// the iforest processor on reference data.
//
//	iforest-eval <subcommand> [flags] [args]
//
// Subcommands:
//
//	auc   mean ROC AUC over seeds on a labelled CSV (fit and score all rows)
//	nab   stream the NAB corpus through the processor, write and score results
//	score score existing NAB-format results
//	plot  draw one results file as a PNG
//	replay run a CSV through the processor built from a config, write verdicts
//	scenario run a labelled scenario folder through the processor, count catches and false alarms
//	backtest run history (OTLP JSON, Prometheus, CSV) through the processor, report
//
// Each subcommand lives in its own file as run<Name>(args []string) error
// with its own flag.FlagSet; add new ones to the switch below and to usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

const usageText = `usage: iforest-eval <subcommand> [flags] [args]

subcommands:
  auc    mean ROC AUC of batch isolation forests on a labelled CSV
  nab    run the iforest processor over the NAB corpus, write NAB results, score them
  score  score NAB-format results of any detector against the label windows
  plot   draw a NAB results file (series, score, threshold, windows) as a PNG
  replay run a CSV's rows through the processor built from a config file and
         write every row's verdicts (per model and per column) as CSV
  scenario run every CSV of a labelled scenario folder (windows.json) through
         the processor; count anomalies caught and false-alarm episodes
  backtest
         run history you have (file exporter OTLP JSON, a Prometheus
         query_range answer, CSV) through the processor and show what it
         would have flagged: an HTML report, a JSON summary

Run "iforest-eval <subcommand> -h" for its flags.
`

// usageError marks errors caused by how the command was invoked (exit 2).
// quiet is set when the flag package has already printed the message.
type usageError struct {
	err   error
	quiet bool
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...)}
}

// parseFlags parses args with fs (which must use flag.ContinueOnError) and
// classifies failures: -h gives flag.ErrHelp, anything else a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{err: err, quiet: true}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "auc":
		err = runAUC(args)
	case "nab":
		err = runNAB(args)
	case "score":
		err = runScore(args)
	case "plot":
		err = runPlot(args)
	case "replay":
		err = runReplay(args)
	case "scenario":
		err = runScenario(args)
	case "backtest":
		err = runBacktestCmd(args)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(os.Stdout, usageText)
		return
	default:
		fmt.Fprintf(os.Stderr, "iforest-eval: unknown subcommand %q\n\n%s", cmd, usageText)
		os.Exit(2)
	}
	os.Exit(exitCode(err))
}

// exitCode reports err on stderr and maps it to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0 // the FlagSet already printed its usage
	}
	var ue usageError
	isUsage := errors.As(err, &ue)
	if !isUsage || !ue.quiet {
		fmt.Fprintf(os.Stderr, "iforest-eval: %v\n", err)
	}
	if isUsage {
		return 2
	}
	return 1
}
