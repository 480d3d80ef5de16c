"""Hypothesis strategies shared by the engine tests: shapes, broadcastable pairs, small arrays."""
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Values well inside float64 range and away from overflow in exp / products.
_FLOATS = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)


def shapes(min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Small array shapes, scalars (()) included when min_dims == 0."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


@st.composite
def broadcastable_pair(draw, max_dims=3, max_side=4):
    """Two shapes that broadcast together: any axis may be 1 on either side, and the shorter
    shape is right-aligned (leading axes dropped) as NumPy allows."""
    full = draw(shapes(min_dims=1, max_dims=max_dims, max_side=max_side))

    def squash(shape):
        ndrop = draw(st.integers(0, len(shape)))
        kept = shape[ndrop:]
        return tuple(1 if draw(st.booleans()) else s for s in kept)

    return squash(full), squash(full)


def arrays(shape, elements=_FLOATS):
    """float64 arrays of a given shape (or a shape strategy)."""
    return hnp.arrays(np.float64, shape, elements=elements)


def away_from_zero(shape, low=0.5, high=3.0):
    """float64 arrays whose entries have |x| ∈ [low, high]: safe for division, log|x|, ReLU kinks."""
    mag = st.floats(low, high, allow_nan=False, width=64)
    return hnp.arrays(np.float64, shape, elements=mag).flatmap(
        lambda a: hnp.arrays(np.bool_, a.shape).map(lambda s: np.where(s, a, -a)))


@st.composite
def array_pair(draw, elements=_FLOATS):
    """Two float64 arrays of broadcastable shapes."""
    sa, sb = draw(broadcastable_pair())
    return draw(arrays(sa, elements)), draw(arrays(sb, elements))
