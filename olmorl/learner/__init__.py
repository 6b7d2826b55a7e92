"""Learner workers: one data-parallel rank each, holding a model shard and its optimizer."""
