"""The national-scale benchmark: see bench/README.md."""
