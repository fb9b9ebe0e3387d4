"""`imgrec studio`: the beginner's web app over the same library code as the CLI.

Projects are ordinary imgrec folders (a folder per class under data/, run folders under
runs/); training, checking and exporting run the very functions `imgrec train`, `imgrec
audit` and `imgrec export` run, in a worker process so the page stays responsive.
"""
