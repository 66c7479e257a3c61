"""The SQLite implementation of storage: the database (lock, group commit, checkpoint,
migrations, file identity guard) and one module per aggregate."""
