"""Hypothesis strategies shared by the project's own tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: what msgpack keeps exactly: JSON-like values plus bytes, the whole 64-bit
#: integer range msgpack encodes, no NaN (not equal to itself), no tuples
#: (they come back as lists)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
