"""The one rule for which percentiles a sample size supports (issue 20.4)."""
from bitcpm_validation.report import stats


def test_p99_needs_a_hundred_samples_else_p50_and_max():
    assert stats.supported_percentiles(100) == ("p50", "p99")
    assert stats.supported_percentiles(5000) == ("p50", "p99")
    assert stats.supported_percentiles(99) == ("p50", "max")
    assert stats.supported_percentiles(1) == ("p50", "max")


def test_no_sample_supports_no_percentile():
    assert stats.supported_percentiles(0) == ()
    assert stats.supported_percentiles(None) == ()
