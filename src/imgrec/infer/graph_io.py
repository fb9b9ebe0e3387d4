"""The names of an imgrec ONNX graph's input and outputs.

The exporter (infer/onnx_graph.py, which needs torch) writes them and the engines
(infer/engine.py, which must not need torch) read them, so they live apart from both.
"""

INPUT, OUTPUT, SIGNATURE = "images", "probabilities", "signature"

# Bump when infer/onnx_graph.py changes what a graph computes (outputs, softmax, padding):
# graphs kept by infer/graph_cache.py under an older version are then exported again.
GRAPH_VERSION = 2  # 2: timm's own SAME padding (fused by ONNX Runtime), not constant pads
