"""The wire codec as a pure function on bytes."""

from __future__ import annotations

import math

import msgpack
import pytest

from core.codec import (
    Quote,
    decode_cache_change,
    decode_latest_quote,
    decode_latest_row,
    decode_quotes,
    encode_cache_change,
    encode_quote_rows,
    encode_quotes,
    quote_from_hash,
    quote_from_valid_row,
    quote_to_hash,
)
from core.errors import DecodeError

Q1 = Quote("AAPL", 187.1, 300.0, 187.12, 100.0, 1_700_000_000_000_000_001, 1_700_000_000_000_000_501)
Q2 = Quote("AAPL", 187.11, 200.0, 187.12, 400.0, 1_700_000_000_000_000_002, 1_700_000_000_000_000_502)


def test_round_trip_keeps_every_quote_in_order() -> None:
    assert decode_quotes(encode_quotes([Q1, Q2])) == [Q1, Q2]


def test_latest_quote_is_last_row_and_count_is_all_rows() -> None:
    assert decode_latest_quote(encode_quotes([Q1, Q2])) == (Q2, 2)


def test_plain_msgpack_reads_the_documented_layout() -> None:
    version, symbol, rows = msgpack.unpackb(encode_quotes([Q1]))
    assert (version, symbol) == (1, "AAPL")
    assert rows == [[Q1.ts_event_ns, Q1.ts_recv_ns, 187.1, 300.0, 187.12, 100.0]]


@pytest.mark.parametrize("raw", [b"garbage", b"", b"\xc1", msgpack.packb({"bid": 1}), msgpack.packb([1, "AAPL"]),
                                 msgpack.packb([2, "AAPL", [[1, 1, 1.0, 1.0, 1.0, 1.0]]]),
                                 msgpack.packb([1, "AAPL", []]), msgpack.packb([1, "AAPL", [[1, 2, 3]]]),
                                 msgpack.packb([1, 7, [[1, 1, 1.0, 1.0, 1.0, 1.0]]])])
def test_malformed_messages_raise_decode_error_with_raw_bytes(raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode_latest_quote(raw)
    assert info.value.raw == raw


@pytest.mark.parametrize("bad_row", [
    [1, 1, math.nan, 1.0, 2.0, 1.0],
    [1, 1, 1.0, 1.0, math.inf, 1.0],
    [1, 1, -1.0, 1.0, 2.0, 1.0],
    [1, 1, 1.0, -5.0, 2.0, 1.0],
    [1, 1, "1.0", 1.0, 2.0, 1.0],
    [1, 1, None, 1.0, 2.0, 1.0],
    [-1, 1, 1.0, 1.0, 2.0, 1.0],
    [1.5, 1, 1.0, 1.0, 2.0, 1.0],
    [1, 1, True, 1.0, 2.0, 1.0],
])
def test_nan_negative_and_non_numeric_fields_are_rejected(bad_row: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_latest_quote(msgpack.packb([1, "AAPL", [bad_row]]))


def test_one_sided_quote_decodes_with_zero_price() -> None:
    quote, _ = decode_latest_quote(encode_quote_rows("AAPL", [(1, 2, 0.0, 0.0, 10.0, 5.0)]))
    assert not quote.has_bid and quote.has_ask and quote.mid is None


def test_quote_classification() -> None:
    crossed = Quote("X", 10.02, 1, 10.01, 1, 0, 0)
    locked = Quote("X", 10.01, 1, 10.01, 1, 0, 0)
    assert crossed.is_crossed and not crossed.is_locked
    assert locked.is_locked and not locked.is_crossed and locked.mid == 10.01


def test_latest_quote_hash_round_trip_is_human_readable() -> None:
    fields = quote_to_hash(Q1)
    assert fields["bid"] == "187.1" and fields["ts_ns"] == str(Q1.ts_event_ns)
    assert quote_from_hash("AAPL", fields) == Q1


def test_seed_style_item_access() -> None:
    assert Q1["bid"] == 187.1 and Q1["instrument"] == "AAPL"
    with pytest.raises(KeyError):
        Q1["nope"]


def test_cache_change_round_trip_and_garbage() -> None:
    assert decode_cache_change(encode_cache_change("AAPL", ["fair_price"], 5)) == ("AAPL", ["fair_price"], 5)
    with pytest.raises(DecodeError):
        decode_cache_change(b"junk")


def test_latest_row_checks_only_the_row_agents_use() -> None:
    # older rows are counted, never used, so their shape is not what decides; the newest row is
    symbol, row, count = decode_latest_row(msgpack.packb([1, "AAPL", [[1, 2], [3, 4, 10, 100, 10.5, 200]]]))
    assert (symbol, count) == ("AAPL", 2)
    assert quote_from_valid_row(symbol, row) == Quote("AAPL", 10.0, 100.0, 10.5, 200.0, 3, 4)
    with pytest.raises(DecodeError):
        decode_latest_row(msgpack.packb([1, "AAPL", [[3, 4, 10.0, 100.0, 10.5, 200.0], [1, 2]]]))
