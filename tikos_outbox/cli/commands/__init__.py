"""One module per group of commands; `tikos_outbox.cli.main` imports only the one
that runs. Each `run_<name>(ctx)` calls the use cases and returns the exit code."""
