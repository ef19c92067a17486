"""tikos-outbox: mails the PDFs that TIKOS writes into its archive to the customers."""

__version__ = "0.1.0"
