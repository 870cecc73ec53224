# A tiny deterministic PRNG for board tests: the same numbers on CPython and MicroPython.


def lcg(seed):
    """Returns below(n): the next number in 0..n-1."""
    state = [seed]

    def below(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n

    return below
