"""torch's CPU mt19937 and ``randperm``, compiled: the green lists of kgw-lefthash and kgw-selfhash.

Both schemes take a green list as the first ``k`` entries of ``torch.randperm(n)``. These
kernels answer "is token t green?" without shuffling the vocabulary (``in_greenlists``)
and draw whole green lists for generation (``greenlist_rows``). ``highest_ids`` finds
selfhash's generation candidates.

Imported only through ``randperm.kernels()``, on first use, never at import time, for the
reason ``philox_kernels.py`` gives: vLLM's CPU worker crashes on numba's objects if they
are loaded when it starts.

torch's CPU generator is the reference mt19937 (Matsumoto and Nishimura 1998): seeded
with the low 32 bits of ``manual_seed``'s argument by the usual linear recurrence, one
32-bit word per ``random()``. ``randperm(n)`` (for ``n < 2**32 / 20``) starts from
``arange(n)`` and for ``i`` in ``0 .. n - 2`` swaps ``r[i]`` with ``r[i + random() % (n - i)]``.
The tests check every kernel against torch.
"""

import numpy as np
from numba import njit

_STATE_WORDS = 624
_SHIFT_WORDS = 397
_U32 = np.uint32
_U64 = np.uint64
_SEED_MULTIPLIER = _U32(1812433253)
_UPPER_BIT, _LOWER_BITS, _TWIST_MATRIX = _U32(0x80000000), _U32(0x7FFFFFFF), _U32(0x9908B0DF)
_TEMPER_B, _TEMPER_C = _U32(0x9D2C5680), _U32(0xEFC60000)
_ONE, _SEVEN, _ELEVEN, _FIFTEEN, _EIGHTEEN, _THIRTY = _U32(1), _U32(7), _U32(11), _U32(15), _U32(18), _U32(30)
_SHIFT_32, _LOW_32 = _U64(32), _U64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _seed(state, seed):
    """mt19937's ``init_genrand``: what ``torch.Generator.manual_seed`` does with the low 32 bits."""
    state[0] = _U32(seed)
    for index in range(1, _STATE_WORDS):
        previous = state[index - 1]
        state[index] = _SEED_MULTIPLIER * (previous ^ (previous >> _THIRTY)) + _U32(index)


# Seeds initialised side by side by _seed_lanes: one seed's 623 steps are a chain of
# dependent multiplies (0.82 us), which 8 independent chains fill (seeding 387 previous
# tokens went from 26 % of in_greenlists' time to about 3 %).
SEED_LANES = 8


@njit(cache=True, inline="always")
def _seed_lanes(states, seeds, first):
    """``_seed`` of ``seeds[first : first + SEED_LANES]`` (fewer at the end) into ``states[:, lane]``."""
    count = min(SEED_LANES, len(seeds) - first)
    for lane in range(SEED_LANES):
        states[0, lane] = _U32(seeds[first + lane]) if lane < count else _U32(0)
    for index in range(1, _STATE_WORDS):
        for lane in range(SEED_LANES):
            previous = states[index - 1, lane]
            states[index, lane] = _SEED_MULTIPLIER * (previous ^ (previous >> _THIRTY)) + _U32(index)


@njit(cache=True, inline="always")
def _twist_bits(upper, lower, shifted):
    bits = (upper & _UPPER_BIT) | (lower & _LOWER_BITS)
    return shifted ^ (bits >> _ONE) ^ ((bits & _ONE) * _TWIST_MATRIX)


@njit(cache=True, inline="always")
def _twist(state):
    """The next 624 untempered words, in place; split in three loops so that they vectorise."""
    for index in range(_STATE_WORDS - _SHIFT_WORDS):
        state[index] = _twist_bits(state[index], state[index + 1], state[index + _SHIFT_WORDS])
    for index in range(_STATE_WORDS - _SHIFT_WORDS, _STATE_WORDS - 1):
        state[index] = _twist_bits(state[index], state[index + 1], state[index + _SHIFT_WORDS - _STATE_WORDS])
    last = _STATE_WORDS - 1
    state[last] = _twist_bits(state[last], state[0], state[_SHIFT_WORDS - 1])


@njit(cache=True, inline="always")
def _temper(word):
    word ^= word >> _ELEVEN
    word ^= (word << _SEVEN) & _TEMPER_B
    word ^= (word << _FIFTEEN) & _TEMPER_C
    return word ^ (word >> _EIGHTEEN)


@njit(cache=True, inline="always")
def _next_block(state, words, count):
    """The next ``count`` (<= 624) output words into ``words[:count]``: one twist per call."""
    _twist(state)
    for index in range(count):
        words[index] = _temper(state[index])


@njit(cache=True, nogil=True)
def randperm(seed, size):
    """``torch.randperm(size, generator=torch.Generator().manual_seed(seed))`` as int64 (seed < 2**32)."""
    permutation = np.arange(size)
    if size < 2:
        return permutation
    state = np.empty(_STATE_WORDS, dtype=np.uint32)
    words = np.empty(_STATE_WORDS, dtype=np.uint32)
    _seed(state, seed)
    for start in range(0, size - 1, _STATE_WORDS):
        block = min(_STATE_WORDS, size - 1 - start)
        _next_block(state, words, block)
        for offset in range(block):
            step = start + offset
            partner = step + np.int64(words[offset]) % (size - step)
            permutation[step], permutation[partner] = permutation[partner], permutation[step]
    return permutation


@njit(cache=True, inline="always")
def _fast_remainders(words, magics, moduli, remainders):
    """``words % moduli`` without a division (Lemire, Kaser and Kurz 2019, exact for 32-bit
    operands), given ``magics = (2**64 - 1) // moduli + 1``. Division does not vectorise
    and made it the kernel's bottleneck: a token's 12,288 draws took 25 us with ``%``, 7 us
    with this."""
    for index in range(len(remainders)):
        remainders[index] = _fast_remainder(words[index], magics[index], moduli[index])


@njit(cache=True, inline="always")
def _fast_remainder(word, magic, modulus):
    low = magic * _U64(word)  # wraps modulo 2**64, as it should
    # The high 64 bits of low * modulus, in pieces that fit 64 bits (modulus < 2**32).
    return ((low >> _SHIFT_32) * modulus + (((low & _LOW_32) * modulus) >> _SHIFT_32)) >> _SHIFT_32


@njit(cache=True, inline="always")
def _partner_distances(words, magics, moduli, distances):
    """``distances[o] = o + words[o] % moduli[o]`` as uint32: step ``start + o`` swaps with
    ``start + distances[o]``. 32 bits (the vocabulary is below 2**24) compare twice as many
    lanes at once as 64 when each token scans a block for its position."""
    for index in range(len(distances)):
        distances[index] = _U32(_fast_remainder(words[index], magics[index], moduli[index])) + _U32(index)


@njit(cache=True, nogil=True)  # nogil: detections in several threads draw in parallel
def in_greenlists(seeds, group_starts, tokens, magics, moduli, green):
    """``green[t] = tokens[t] in randperm(vocab_size, seed=seeds[g])[:greenlist_size]`` for
    every ``t`` of group ``g``, ``group_starts[g] <= t < group_starts[g + 1]``.

    ``moduli`` is ``vocab_size - arange(greenlist_size)`` (uint64), ``magics`` their
    ``_fast_remainders`` constants; every token must lie in ``[0, vocab_size)``. A group
    is every token one seed decides (lefthash: the tokens after one previous token), so
    the seed's draws are made once for all of them.

    Follows each token through the first ``greenlist_size`` Fisher-Yates steps instead
    of shuffling the vocabulary: it sits at position ``p`` (its own id at first). Step
    ``i`` swaps positions ``i`` and ``j = i + draw % (n - i)`` (``j >= i``) and settles
    position ``i`` for good. So if ``j == p`` the token lands at ``i`` and is green (``j ==
    p == i`` included: a no-op swap settles it in place); else if ``p == i`` it moves up
    to ``j``; else it stays. Draws are made a block of 624 at a time, a whole block is
    checked for ``j == p`` with one vectorised count per token, and only a hit, or ``p``
    falling in the block, is walked step by step. The draws stop once every token of
    the group is green.
    """
    greenlist_size = len(moduli)
    states = np.empty((_STATE_WORDS, SEED_LANES), dtype=np.uint32)
    state = np.empty(_STATE_WORDS, dtype=np.uint32)
    words = np.empty(_STATE_WORDS, dtype=np.uint32)
    distances = np.empty(_STATE_WORDS, dtype=np.uint32)
    positions = np.empty(len(tokens), dtype=np.int64)
    for group in range(len(seeds)):
        lane = group % SEED_LANES
        if lane == 0:
            _seed_lanes(states, seeds, group)
        state[:] = states[:, lane]
        first, stop = group_starts[group], group_starts[group + 1]
        for member in range(first, stop):
            positions[member] = tokens[member]
            green[member] = False
        undecided = stop - first
        start = 0
        while start < greenlist_size and undecided > 0:
            block = min(_STATE_WORDS, greenlist_size - start)
            _next_block(state, words, block)
            _partner_distances(
                words[:block], magics[start : start + block], moduli[start : start + block], distances[:block]
            )
            for member in range(first, stop):
                if green[member]:
                    continue
                position = positions[member]
                target = _U32(position - start)  # position >= start while the token is unsettled
                hits = 0
                for offset in range(block):
                    hits += distances[offset] == target
                if hits == 0 and position >= start + block:
                    continue
                for offset in range(block):
                    step = start + offset
                    partner = start + np.int64(distances[offset])
                    if partner == position:
                        green[member] = True
                        undecided -= 1
                        break
                    if position == step:
                        position = partner
                positions[member] = position
            start += block


@njit(cache=True, nogil=True)
def greenlist_rows(seeds, magics, moduli, green):
    """``green[r, randperm(vocab_size, seed=seeds[r])[:greenlist_size]] = True``, on a zeroed
    bool ``green`` of shape [rows, vocab_size]; ``moduli`` and ``magics`` as ``in_greenlists``.

    Runs the ``greenlist_size`` swaps on one scratch ``arange(vocab_size)``, reads the
    green ids off its head, then undoes the swaps in reverse so the next row starts from
    ``arange`` again: twice ``greenlist_size`` swaps instead of a fresh vocabulary each row.
    """
    greenlist_size = len(moduli)
    vocab_size = green.shape[1]
    permutation = np.arange(vocab_size).astype(np.int32)  # int32: half the cache lines of int64
    partners = np.empty(greenlist_size, dtype=np.int64)
    state = np.empty(_STATE_WORDS, dtype=np.uint32)
    words = np.empty(_STATE_WORDS, dtype=np.uint32)
    offsets = np.empty(_STATE_WORDS, dtype=np.uint64)
    for row in range(len(seeds)):
        _seed(state, seeds[row])
        for start in range(0, greenlist_size, _STATE_WORDS):
            block = min(_STATE_WORDS, greenlist_size - start)
            _next_block(state, words, block)
            _fast_remainders(
                words[:block], magics[start : start + block], moduli[start : start + block], offsets[:block]
            )
            for offset in range(block):
                step = start + offset
                partner = step + np.int64(offsets[offset])
                partners[step] = partner
                permutation[step], permutation[partner] = permutation[partner], permutation[step]
        for step in range(greenlist_size):
            green[row, permutation[step]] = True
        for step in range(greenlist_size - 1, -1, -1):
            partner = partners[step]
            permutation[step], permutation[partner] = permutation[partner], permutation[step]


@njit(cache=True, nogil=True)
def highest_ids(values, rows, count, ids):
    """``ids[r]``: the ids of the ``count`` highest ``values[rows[r]]`` (count <= width),
    highest first, the lowest id first among equal values; NaN never counts.

    One pass with a sorted buffer: on a 49,152-wide row of noise, about 300 values enter it.
    """
    best = np.empty(count, dtype=values.dtype)
    for output_row in range(len(rows)):
        row = rows[output_row]
        filled = 0
        for token in range(values.shape[1]):
            value = values[row, token]
            if value != value or (filled == count and not value > best[count - 1]):
                continue
            position = filled if filled < count else count - 1  # a full buffer drops its last
            filled = min(filled + 1, count)
            # Equal values keep their place ahead of this one: earlier ids come first.
            while position > 0 and best[position - 1] < value:
                best[position] = best[position - 1]
                ids[output_row, position] = ids[output_row, position - 1]
                position -= 1
            best[position] = value
            ids[output_row, position] = token
