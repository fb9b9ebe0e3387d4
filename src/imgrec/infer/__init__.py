"""How to run a network fast: engines (eager torch, ONNX Runtime, scikit-learn), decoded
batches, the batch prediction pipeline, and embeddings. Knows nothing of model files."""
