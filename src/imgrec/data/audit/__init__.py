"""Data audit: per-file facts, duplicates and label problems, found before any training run."""
