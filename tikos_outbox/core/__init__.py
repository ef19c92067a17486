"""The pure core: no I/O, no clock, no database. Everything here takes its inputs as values."""
