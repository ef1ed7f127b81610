"""Test support: builders of test data (look-alike CRESDA packages) that tests, benchmarks and
their fixtures share; none of it ships in a service package."""
