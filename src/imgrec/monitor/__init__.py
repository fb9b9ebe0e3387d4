"""After training: watching a model in use (drift) and documenting it (model card)."""
