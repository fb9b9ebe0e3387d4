"""Data quality: unreadable files, duplicates and cross-split leakage, label errors, outliers.

Built on data/ (decoding, image facts) and infer/ (embeddings); `imgrec audit` and the
training job run it before fitting.
"""
