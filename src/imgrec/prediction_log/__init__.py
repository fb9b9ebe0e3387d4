"""The prediction log: one schema (SQLite), its writer and the optional image store.

`imgrec serve --log` and `imgrec predict --log` write it; `imgrec drift` reads it.
"""
