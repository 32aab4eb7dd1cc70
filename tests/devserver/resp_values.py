"""Hypothesis strategy of RESP2 reply values (for the devserver's splitter and encoder tests)."""

from __future__ import annotations

from hypothesis import strategies as st

from bridge.core.resp import ErrorReply, Status

_line = st.binary(max_size=10).filter(lambda b: b"\r" not in b and b"\n" not in b)
_leaf = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.binary(max_size=40),
    _line.map(Status),
    _line.map(ErrorReply),
)
#: One reply: a leaf or nested arrays of them.
reply_value = st.recursive(_leaf, lambda children: st.lists(children, max_size=5), max_leaves=30)
#: The replies of one pipeline.
replies = st.lists(reply_value, min_size=1, max_size=6)
