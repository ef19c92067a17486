"""The use cases: intake, delivery, administration, monitoring. Each takes its
ports as parameters; `wiring` builds them for the CLI, the service, the tests and
the benchmarks alike."""
