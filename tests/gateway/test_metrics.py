"""The gateway's batch histogram reads exactly as prometheus_client's own Histogram."""

from gridlink.gateway.metrics import LATENCY_BUCKETS, BatchHistogram
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

values = st.one_of(st.sampled_from(LATENCY_BUCKETS),  # on a bound: counted in that bucket
                   st.floats(min_value=0, max_value=1e4, allow_nan=False))


@given(st.lists(st.lists(values, max_size=20), max_size=5))
def test_batches_expose_what_observing_one_by_one_does(batches):
    ref_registry, registry = CollectorRegistry(), CollectorRegistry()
    ref = Histogram("x_seconds", "doc", buckets=LATENCY_BUCKETS, registry=ref_registry)
    ours = BatchHistogram("x_seconds", "doc", LATENCY_BUCKETS, registry=registry)
    for batch in batches:
        for v in batch:
            ref.observe(v)
        ours.observe_many(batch)
    expected = [line for line in generate_latest(ref_registry).decode().splitlines()
                if "_created" not in line]
    got = generate_latest(registry).decode().splitlines()
    # the sums are added in another order: equal to the last few bits
    exp_sum = [float(x.split()[-1]) for x in expected if x.startswith("x_seconds_sum")]
    got_sum = [float(x.split()[-1]) for x in got if x.startswith("x_seconds_sum")]
    assert abs(exp_sum[0] - got_sum[0]) <= 1e-9 * max(1.0, exp_sum[0])
    assert [x for x in got if "_sum" not in x] == [x for x in expected if "_sum" not in x]
