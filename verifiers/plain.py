"""Plain data across a sandbox's wall: `encoder()` turns None, bools, ints, floats, strs and lists,
tuples, dicts, sets and frozensets of them into a flat list of str tokens, `decoder()` turns tokens
back. Both bind the builtins they use when made, so that a program that later rebinds or patches
names does not reach them. This file's source also runs inside sandboxes: it imports nothing.
"""

MAX_DEPTH = 100
"""Deepest nesting of containers either side accepts; deeper values are refused, not truncated."""
MAX_MEMBERS = 10_000
"""Most members of one set, frozenset or dict the decoder builds: hashing bounds its cost."""


def encoder():
    """`encode(value) -> list[str]`: a value's tokens; other types (objects, generators) raise.

    Subclasses of the plain types count as their base type, read through the base type's own
    methods (`int.__format__`, `list.__iter__`...): an int subclass whose value is 5 encodes as 5
    whatever its `__eq__`, `__repr__` or `__iter__` answer. No code of the value's own runs.
    """
    type_, issubclass_, str_, list_, len_ = type, issubclass, str, list, len
    int_format, float_hex, str_str, dict_items = int.__format__, float.hex, str.__str__, dict.items
    # The tag is followed by the element count; dicts count pairs.
    containers = (
        (list, "l", list.__iter__),
        (tuple, "t", tuple.__iter__),
        (set, "S", set.__iter__),
        (frozenset, "z", frozenset.__iter__),
    )
    max_depth, type_error, value_error = MAX_DEPTH, TypeError, ValueError

    def add(value, out, depth):
        if depth > max_depth:
            raise value_error("plain data nested too deeply")
        kind = type_(value)
        if value is None:
            out.append("n")
        elif kind is bool:
            out.append("T" if value else "F")
        elif issubclass_(kind, int):
            out.append("i" + int_format(value, "x"))
        elif issubclass_(kind, float):
            out.append("f" + float_hex(value))
        elif issubclass_(kind, str):
            out.append("s" + str_str(value))
        elif issubclass_(kind, dict):
            pairs = list_(dict_items(value))
            out.append("d" + str_(len_(pairs)))
            for key, item in pairs:
                add(key, out, depth + 1)
                add(item, out, depth + 1)
        else:
            for base, tag, iterate in containers:
                if issubclass_(kind, base):
                    items = list_(iterate(value))
                    out.append(tag + str_(len_(items)))
                    for item in items:
                        add(item, out, depth + 1)
                    return
            raise type_error("not plain data")

    def encode(value):
        out = []
        add(value, out, 0)
        return out

    return encode


def decoder():
    """`decode(tokens) -> value`: the inverse of `encode`; malformed tokens raise ValueError.

    Its cost is linear in the tokens: a set, frozenset or dict past MAX_MEMBERS, or one whose
    members' hashes collide (equal hashes make building it quadratic), is refused unbuilt.
    """
    type_, str_, int_, len_, range_, zip_, hash_, map_ = type, str, int, len, range, zip, hash, map
    list_, tuple_, set_, frozenset_, dict_ = list, tuple, set, frozenset, dict
    float_fromhex, max_depth, value_error = float.fromhex, MAX_DEPTH, ValueError
    max_members = MAX_MEMBERS
    scalars = {"n": None, "T": True, "F": False}
    containers = {"l": list_, "t": tuple_, "S": set_, "z": frozenset_}

    def take(tokens, position, depth):
        """The value starting at tokens[position], and the position after it."""
        if depth > max_depth or position >= len_(tokens) or type_(tokens[position]) is not str_:
            raise value_error("malformed plain data")
        token = tokens[position]
        tag, rest, position = token[:1], token[1:], position + 1
        if token in scalars:
            return scalars[token], position
        if tag == "i":
            return int_(rest, 16), position
        if tag == "f":
            return float_fromhex(rest), position
        if tag == "s":
            return rest, position
        if tag in containers or tag == "d":
            if not (rest.isascii() and rest.isdigit()) or len_(rest) > 7:
                raise value_error("malformed plain data")
            count = int_(rest)
            # Each item takes a token at least: a count past the tokens left is refused at once.
            if count > len_(tokens) - position or (tag not in "lt" and count > max_members):
                raise value_error("malformed plain data: too many items")
            items = []
            for _ in range_(count * (2 if tag == "d" else 1)):
                item, position = take(tokens, position, depth + 1)
                items.append(item)
            keys = items[::2] if tag == "d" else items
            # A few equal hashes cost little; many make building the set quadratic.
            if (
                tag not in "lt"
                and count > 32
                and count - len_(set_(map_(hash_, keys))) > count // 64
            ):
                raise value_error("malformed plain data: colliding hashes")
            if tag == "d":
                return dict_(zip_(items[::2], items[1::2])), position
            return containers[tag](items), position
        raise value_error("malformed plain data")

    def decode(tokens):
        try:
            value, end = take(tokens, 0, 0)
        except (TypeError, OverflowError) as error:  # an unhashable key or member, an odd float
            raise value_error(f"malformed plain data: {error}") from None
        if end != len_(tokens):
            raise value_error("malformed plain data: trailing tokens")
        return value

    return decode
