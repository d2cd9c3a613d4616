"""``emfformer bench``: params, FLOPs, memory, latency and throughput of many models, side by side.

``run`` drives the measurements (one child process per point, ``probe``), ``measure`` holds the
primitives (parameter and FLOP counts, peak memory, timing, matmul peak), ``summary`` checks the
paper's efficiency claims and renders the markdown, ``plots`` draws the figures.
"""
