"""Helpers of the tests, benchmarks and HIL tests (no tests here): rigs, brokers, fixtures."""
