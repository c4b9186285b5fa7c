"""The local AWS sandbox: developer tooling, not collection content (excluded from the build).

``python -m sandbox start|stop|env|status|run -- CMD`` — see sandbox/README.md.
"""
