"""kernels.crc32c against published check values and a bitwise pure-Python CRC32C."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

from pomaidb_core import kernels
from pomaidb_core.errors import InvalidArgumentError


def _reference_crc32c(data: bytes, value: int = 0) -> int:
    crc = value ^ 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0x00000000),
        (b"123456789", 0xE3069283),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4: 32 bytes of zeros
        (b"\xff" * 32, 0x62A8AB43),  # 32 bytes of ones
        (bytes(range(32)), 0x46DD794E),  # incrementing
        (bytes(range(31, -1, -1)), 0x113FDB5C),  # decrementing
    ],
)
def test_known_check_values(isa, data, expected):
    assert kernels.crc32c(data) == expected


def test_matches_bitwise_reference_at_every_length_and_offset(isa):
    blob = np.random.default_rng(1).integers(0, 256, size=200, dtype=np.uint8).tobytes()
    view = memoryview(blob)
    for start in range(8):
        for length in range(0, 70, 3):
            chunk = view[start : start + length]
            assert kernels.crc32c(chunk) == _reference_crc32c(bytes(chunk)), (start, length)


def test_chaining_equals_one_pass(isa):
    a, b = b"write-ahead log header", b"and its payload" * 7
    assert kernels.crc32c(b, kernels.crc32c(a)) == kernels.crc32c(a + b)
    assert kernels.crc32c(b"", 0x12345678) == 0x12345678


def test_accepts_every_contiguous_buffer_type(isa, tmp_path):
    data = bytes(range(256)) * 4
    expected = _reference_crc32c(data)
    path = tmp_path / "blob"
    path.write_bytes(data)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        assert kernels.crc32c(mapped) == expected
        assert kernels.crc32c(mapped[100:300]) == _reference_crc32c(data[100:300])
    array = np.frombuffer(data, dtype=np.uint32)
    for buffer in (bytearray(data), memoryview(data), array, array.reshape(16, 16)):
        assert kernels.crc32c(buffer) == expected


def test_rejects_strided_buffers_and_bad_values():
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        kernels.crc32c(np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(InvalidArgumentError, match="contiguous"):
        kernels.crc32c(memoryview(b"abcdef")[::2])
    with pytest.raises(InvalidArgumentError, match="buffer"):
        kernels.crc32c("text is not bytes")
    with pytest.raises(InvalidArgumentError, match=r"2\*\*32"):
        kernels.crc32c(b"x", 2**32)
    with pytest.raises(InvalidArgumentError, match=r"2\*\*32"):
        kernels.crc32c(b"x", -1)
