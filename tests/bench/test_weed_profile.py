"""``bench.weed_profile``: Go's pprof CPU profiles read without a Go toolchain."""

from __future__ import annotations

import gzip

from bench.weed_profile import parse, summary


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _packed(values: list[int]) -> bytes:
    return b"".join(_varint(v) for v in values)


def _profile() -> bytes:
    """Two samples as Go writes them: ``md5.block`` called by ``ParseUpload`` (30 ms) and by
    ``teeReader.Read`` (10 ms), and ``Syscall6`` alone (20 ms); the second sample's location
    ids unpacked, as older writers did."""
    strings = ["", "samples", "count", "cpu", "nanoseconds", "crypto/md5.block", "needle.ParseUpload"]
    strings += ["io.(*teeReader).Read", "syscall.Syscall6"]
    message = _field(1, _field(1, 1) + _field(2, 2)) + _field(1, _field(1, 3) + _field(2, 4))
    for function_id, name_index in ((1, 5), (2, 6), (3, 7), (4, 8)):
        message += _field(5, _field(1, function_id) + _field(2, name_index))
        message += _field(4, _field(1, function_id) + _field(4, _field(1, function_id)))
    message += _field(2, _field(1, _packed([1, 2])) + _field(2, _packed([3, 30_000_000])))
    message += _field(2, _field(1, 1) + _field(1, 3) + _field(2, _packed([1, 10_000_000])))
    message += _field(2, _field(1, _packed([4])) + _field(2, _packed([2, 20_000_000])))
    message += b"".join(_field(6, s.encode()) for s in strings)
    return gzip.compress(message)


def test_a_profile_is_read_as_named_stacks_with_their_cpu_time() -> None:
    profile = parse(_profile())
    assert profile.sample_types == [("samples", "count"), ("cpu", "nanoseconds")]
    assert profile.seconds() == 0.06
    assert profile.flat() == {"crypto/md5.block": 40_000_000, "syscall.Syscall6": 20_000_000}
    assert profile.cumulative()["needle.ParseUpload"] == 30_000_000
    assert profile.callers("crypto/md5.block", depth=1) == {
        ("needle.ParseUpload",): 30_000_000,
        ("io.(*teeReader).Read",): 10_000_000,
    }


def test_the_summary_names_the_hot_functions_and_their_callers() -> None:
    text = summary(parse(_profile()), top=5)
    assert "SeaweedFS CPU in the profile: 0.06 s" in text
    assert "0.04 s  66.7%  crypto/md5.block" in text
    assert "0.03 s  needle.ParseUpload" in text
