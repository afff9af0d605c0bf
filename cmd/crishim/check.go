package main

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/urfave/cli/v2"

	"github.com/crishim/crishim/internal/preflight"
)

// checkCommand takes serve's flags and config file, so that it checks the
// machine for exactly the configuration serve would run with.
func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "preflight: can this machine run pods with this configuration? (non-zero exit on any failure)",
		Flags: serveFlags(),
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			// The packages the checks reuse log as the daemon would; the
			// report says it all.
			logrus.SetLevel(logrus.ErrorLevel)
			results := preflight.Run(c.Context, cfg, preflight.Machine())
			preflight.Print(os.Stdout, results)
			if preflight.Failed(results) {
				fmt.Fprintln(os.Stderr, "crishim check: this machine cannot run pods as configured (see the fail lines)")
				return cli.Exit("", 1)
			}
			return nil
		},
	}
}
