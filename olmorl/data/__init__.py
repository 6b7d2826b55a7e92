"""Data: row schemas and validation, loaders, and synthetic data sets for tests and tiny recipes."""
