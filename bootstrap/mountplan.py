"""The mounts that give a SnapStart copy its private /tmp: the one definition shared by the host,
which plans them (sandbox/restore.py), and the template, whose copies make them
(bootstrap/namespaces.py).

A plan is a sequence of steps, each a small immutable value. It travels to the template as JSON,
in the `mounts` of `_LAMBDALET_TEMPLATE`: `encode` and `decode` are that form, and are defined here
only. One step is one object with its kind under "step":

    {"step": "tmpfs", "target": "/var/task", "size_mb": 512}
    {"step": "mkdir", "path": "/var/task/venv"}
    {"step": "bind_read_only", "source": "/tmp/venv", "target": "/var/task/venv"}
    {"step": "move", "source": "/var/task", "target": "/tmp"}

Standard library only, and nothing imported: the template reads it during its init.
"""


class Step:
    """One step of a plan. Compared by kind and value; immutable. Each kind names its fields in
    `__slots__` (in JSON and constructor order) and their types in `types`."""

    __slots__ = ()
    step = ""  # the kind's name in JSON
    types = ()

    def __init__(self, *values):
        if len(values) != len(self.__slots__):
            raise TypeError(f"{type(self).__name__} takes {', '.join(self.__slots__)}")
        for name, value in zip(self.__slots__, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def values(self):
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other):
        return type(other) is type(self) and other.values() == self.values()

    def __hash__(self):
        return hash((type(self), self.values()))

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(map(repr, self.values()))})"


class Tmpfs(Step):
    """An empty tmpfs of `size_mb` at `target`, writable by all (sticky), as Lambda's /tmp."""

    __slots__ = ("target", "size_mb")
    step = "tmpfs"
    types = (str, int)

    @property
    def options(self):
        return f"size={self.size_mb}m,mode=1777"


class MakeDirectory(Step):
    """A directory (and its parents) to mount a directory on."""

    __slots__ = ("path",)
    step = "mkdir"
    types = (str,)


class MakeFile(Step):
    """An empty file to mount a file on."""

    __slots__ = ("path",)
    step = "touch"
    types = (str,)


class BindReadOnly(Step):
    """`source` shown read-only at `target` (a bind mount, then its read-only remount)."""

    __slots__ = ("source", "target")
    step = "bind_read_only"
    types = (str, str)


class Move(Step):
    """The mount at `source` moved to `target`."""

    __slots__ = ("source", "target")
    step = "move"
    types = (str, str)


KINDS = {kind.step: kind for kind in (Tmpfs, MakeDirectory, MakeFile, BindReadOnly, Move)}


def encode(steps):
    """`steps` as JSON-ready values (a list of dicts)."""
    return [{"step": step.step, **dict(zip(step.__slots__, step.values()))} for step in steps]


def decode(items):
    """The steps `encode` gave, from their JSON (as `json.loads` returns it): a tuple of Steps.
    Raises ValueError on anything else, so a wrong plan fails the template, not each copy."""
    if not isinstance(items, list):
        raise ValueError(f"a mount plan is a list of steps, not {items!r}")
    steps = []
    for item in items:
        kind = KINDS.get(item.get("step")) if isinstance(item, dict) else None
        if kind is None or len(item) != len(kind.__slots__) + 1:
            raise ValueError(f"not a mount step: {item!r}")
        try:
            values = [item[name] for name in kind.__slots__]
        except KeyError:
            raise ValueError(f"not a mount step: {item!r}") from None
        if any(type(value) is not expected for value, expected in zip(values, kind.types)):
            raise ValueError(f"not a mount step: {item!r}")
        steps.append(kind(*values))
    return tuple(steps)
