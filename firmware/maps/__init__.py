"""Grid maps shipped with gridlink (the sample is made by gridlink.host.make_shangjie) and
synthetic layers for tests and benchmarks."""
