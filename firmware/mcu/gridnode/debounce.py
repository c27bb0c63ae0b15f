# Debounce a mechanical contact: sample until ``stable`` reads in a row agree.
def read_stable(pin, sleep_ms, stable=5, interval_ms=10, max_reads=100):
    # Returns the settled level (0/1), or None when it never settled within max_reads.
    last = pin.value()
    run = 1
    for _ in range(max_reads - 1):
        if run >= stable:
            return last
        sleep_ms(interval_ms)
        v = pin.value()
        if v == last:
            run += 1
        else:
            last = v
            run = 1
    return last if run >= stable else None
