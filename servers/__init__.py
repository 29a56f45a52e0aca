"""Start and stop real S3 servers on 127.0.0.1 for the tests and benchmarks."""
