"""The repositories in SQL that SQLite and PostgreSQL both speak, written once against
`db.SqlDatabase` (what they need of an engine) and `db.Dialect` (the few fragments spelled
differently). Each engine package composes them with its own database: `webhook.storage.sqlite`,
`webhook.storage.postgres`."""
