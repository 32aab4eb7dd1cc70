"""Redis' glob patterns (util.c stringmatchlen) for what is filtered outside Redis:
`COMMAND LIST FILTERBY PATTERN` and the devserver's `CONFIG GET` (case-insensitive, as Redis),
`PUBSUB CHANNELS` (exact).

`*`, `?`, `[a-z]`, `[^x]` and `\\x` escapes, over bytes; star positions are memoized so a
pattern such as `*a*a*a*b` costs O(len(pattern) x len(text)), never exponential time.
"""

from __future__ import annotations


def glob_match(pattern: bytes, subject: bytes, *, nocase: bool = False) -> bool:
    """Whether `subject` matches the Redis glob `pattern`."""
    if nocase:
        pattern, subject = pattern.lower(), subject.lower()
    return _glob(pattern, 0, subject, 0, {})


def _glob(p: bytes, i: int, s: bytes, j: int, seen: dict[tuple[int, int], bool]) -> bool:
    while i < len(p):
        c = p[i]
        if c == 0x2A:  # *
            while i + 1 < len(p) and p[i + 1] == 0x2A:
                i += 1
            if i + 1 == len(p):
                return True
            key = (i, j)
            if key not in seen:
                seen[key] = any(_glob(p, i + 1, s, k, seen) for k in range(j, len(s) + 1))
            return seen[key]
        if j >= len(s):
            return False
        if c == 0x3F:  # ?
            i, j = i + 1, j + 1
            continue
        if c == 0x5B:  # [
            i, matched = _char_class(p, i + 1, s[j])
            if not matched:
                return False
            j += 1
            continue
        if c == 0x5C and i + 1 < len(p):  # backslash escapes the next byte
            i += 1
            c = p[i]
        if c != s[j]:
            return False
        i, j = i + 1, j + 1
    return j == len(s)


def _char_class(p: bytes, i: int, ch: int) -> tuple[int, bool]:
    """Match `ch` against the class starting at p[i] (after `[`); (index after `]`, matched)."""
    negate = i < len(p) and p[i] == 0x5E  # ^
    if negate:
        i += 1
    matched = False
    while i < len(p) and p[i] != 0x5D:  # ]
        if p[i] == 0x5C and i + 1 < len(p):
            i += 1
            matched |= p[i] == ch
        elif i + 2 < len(p) and p[i + 1] == 0x2D:  # a-z
            low, high = sorted((p[i], p[i + 2]))
            matched |= low <= ch <= high
            i += 2
        else:
            matched |= p[i] == ch
        i += 1
    return i + 1, matched != negate
