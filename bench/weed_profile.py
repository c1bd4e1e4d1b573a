"""Where SeaweedFS spends its CPU: a reader of Go's CPU profiles (pprof), no Go toolchain needed.

``weed server -cpuprofile=FILE`` writes a gzipped pprof profile when it stops gracefully; its
functions are already named (the pip wheel's ``weed`` is stripped, so ``perf`` shows only
addresses). ``python -m bench.export_ab --weed-cpuprofile FILE`` runs the exports with it;
this prints the summary again, or for any profile:

    uv run python -m bench.weed_profile FILE [--top 25] [--callers crypto/md5.block]

The decoder reads only the fields it needs of ``profile.proto`` (samples, locations, functions,
the string table).
"""

from __future__ import annotations

import argparse
import gzip
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# profile.proto field numbers
_PROFILE_SAMPLE_TYPE, _PROFILE_SAMPLE, _PROFILE_LOCATION, _PROFILE_FUNCTION, _PROFILE_STRINGS = 1, 2, 4, 5, 6
_VALUE_TYPE_TYPE, _VALUE_TYPE_UNIT = 1, 2
_SAMPLE_LOCATION_ID, _SAMPLE_VALUE = 1, 2
_LOCATION_ID, _LOCATION_LINE = 1, 4
_LINE_FUNCTION_ID = 1
_FUNCTION_ID, _FUNCTION_NAME = 1, 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field of one message, in order."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated integer field's values: packed (one length-delimited run) or one varint."""
    if isinstance(value, int):
        return [value]
    numbers, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        numbers.append(number)
    return numbers


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class Profile:
    """A CPU profile as stacks of function names (leaf first) with their value."""

    sample_types: list[tuple[str, str]] = field(default_factory=list)
    stacks: list[tuple[tuple[str, ...], list[int]]] = field(default_factory=list)

    def value_index(self, kind: str = "cpu") -> int:
        for index, (name, _) in enumerate(self.sample_types):
            if name == kind:
                return index
        return len(self.sample_types) - 1

    def seconds(self, kind: str = "cpu") -> float:
        index = self.value_index(kind)
        return sum(values[index] for _, values in self.stacks) / 1e9

    def flat(self, kind: str = "cpu") -> Counter[str]:
        """Nanoseconds spent in each function itself."""
        index, totals = self.value_index(kind), Counter[str]()
        for stack, values in self.stacks:
            if stack:
                totals[stack[0]] += values[index]
        return totals

    def cumulative(self, kind: str = "cpu") -> Counter[str]:
        """Nanoseconds spent in each function and what it called."""
        index, totals = self.value_index(kind), Counter[str]()
        for stack, values in self.stacks:
            for name in set(stack):
                totals[name] += values[index]
        return totals

    def callers(self, function: str, depth: int = 3, kind: str = "cpu") -> Counter[tuple[str, ...]]:
        """Nanoseconds in ``function`` by the ``depth`` frames that called it."""
        index, totals = self.value_index(kind), Counter[tuple[str, ...]]()
        for stack, values in self.stacks:
            if function in stack:
                at = stack.index(function)
                totals[stack[at + 1 : at + 1 + depth]] += values[index]
        return totals


def parse(data: bytes) -> Profile:
    """A pprof profile (gzipped or not)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    strings: list[str] = []
    raw_types: list[tuple[int, int]] = []
    raw_samples: list[tuple[list[int], list[int]]] = []
    location_functions: dict[int, list[int]] = {}
    function_names: dict[int, int] = {}
    for number, _, value in _fields(data):
        if number == _PROFILE_STRINGS and isinstance(value, bytes):
            strings.append(value.decode("utf-8", "replace"))
        elif number == _PROFILE_SAMPLE_TYPE and isinstance(value, bytes):
            parts = {n: v for n, _, v in _fields(value)}
            raw_types.append((int(parts.get(_VALUE_TYPE_TYPE, 0)), int(parts.get(_VALUE_TYPE_UNIT, 0))))
        elif number == _PROFILE_SAMPLE and isinstance(value, bytes):
            locations: list[int] = []
            values: list[int] = []
            for n, w, v in _fields(value):
                if n == _SAMPLE_LOCATION_ID:
                    locations.extend(_ints(w, v))
                elif n == _SAMPLE_VALUE:
                    values.extend(_signed(x) for x in _ints(w, v))
            raw_samples.append((locations, values))
        elif number == _PROFILE_LOCATION and isinstance(value, bytes):
            location_id, functions = 0, []
            for n, _, v in _fields(value):
                if n == _LOCATION_ID and isinstance(v, int):
                    location_id = v
                elif n == _LOCATION_LINE and isinstance(v, bytes):
                    line = {ln: lv for ln, _, lv in _fields(v)}
                    functions.append(int(line.get(_LINE_FUNCTION_ID, 0)))
            location_functions[location_id] = functions  # inlined frames first, as pprof lists them
        elif number == _PROFILE_FUNCTION and isinstance(value, bytes):
            parts = {n: v for n, _, v in _fields(value)}
            function_names[int(parts.get(_FUNCTION_ID, 0))] = int(parts.get(_FUNCTION_NAME, 0))

    def name(function_id: int) -> str:
        index = function_names.get(function_id)
        return strings[index] if index is not None and index < len(strings) else f"?{function_id}"

    profile = Profile(sample_types=[(strings[t], strings[u]) for t, u in raw_types])
    for locations, values in raw_samples:
        stack = tuple(name(f) for location in locations for f in location_functions.get(location, []))
        profile.stacks.append((stack, values))
    return profile


def summary(profile: Profile, *, top: int = 15, callers_of: str | None = "crypto/md5.block") -> str:
    """The profile's total, its top functions (flat and cumulative) and who calls ``callers_of``."""
    total = profile.seconds() or 1e-9
    lines = [f"SeaweedFS CPU in the profile: {profile.seconds():.2f} s"]

    def table(title: str, counts: Counter[str]) -> None:
        lines.append(title)
        for function, nanos in counts.most_common(top):
            lines.append(f"  {nanos / 1e9:7.2f} s {100 * nanos / 1e9 / total:5.1f}%  {function}")

    table("flat (in the function itself):", profile.flat())
    table("cumulative (with what it called):", profile.cumulative())
    if callers_of:
        lines.append(f"callers of {callers_of}:")
        for frames, nanos in profile.callers(callers_of).most_common(top):
            lines.append(f"  {nanos / 1e9:7.2f} s  {' <- '.join(frames)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--callers", default="crypto/md5.block", help="a function whose callers to list")
    args = parser.parse_args(argv)
    print(summary(parse(args.profile.read_bytes()), top=args.top, callers_of=args.callers or None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
