"""The office's web console: `tikos-outbox web`, or inside `run` with `[web] enabled`.

Server-rendered pages (Starlette, Jinja2, uvicorn), no scripts. It reads and moves
entries only through the use cases, as the CLI does (an import contract keeps it
off the database)."""
