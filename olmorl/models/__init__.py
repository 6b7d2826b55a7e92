"""Tiny Olmo 3 style models and tokenizer, built locally for tests and toy runs."""
