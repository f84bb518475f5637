"""edge_askd_bench: per-hardware latency and accuracy benchmarks with peers measured side by side."""
