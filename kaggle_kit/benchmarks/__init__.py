"""Side-by-side benchmarks: the kit's way and a baseline, measured on the same input."""
