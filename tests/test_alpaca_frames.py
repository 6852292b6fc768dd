"""The hot-path frame decoder: quotes into structs, everything else refused for the generic path."""

from __future__ import annotations

import msgpack
import pytest

from hub.marketdata.sources.alpaca_frames import NotAQuoteFrame, decode_quote_frame, timestamp_ns

TS_NS = 1_732_525_000_123_456_789


def _quote(symbol: str = "AAPL", **over: object) -> dict[str, object]:
    quote: dict[str, object] = {"T": "q", "S": symbol, "bx": "V", "bp": 189.5, "bs": 3, "ax": "V", "ap": 189.52,
                                "as": 5, "c": ["R"], "z": "C", "t": msgpack.Timestamp.from_unix_nano(TS_NS)}
    quote.update(over)
    return quote


def test_quote_frame_decodes_to_structs_with_all_nine_digits() -> None:
    [q1, q2] = decode_quote_frame(msgpack.packb([_quote(), _quote("MSFT")]))
    assert (q1.S, q1.bp, q1.bs, q1.ap, q1.as_) == ("AAPL", 189.5, 3.0, 189.52, 5.0)
    assert q2.S == "MSFT"
    assert timestamp_ns(q1.t) == TS_NS


@pytest.mark.parametrize("ts_ns", [1_700_000_000 * 10**9, TS_NS, 2**34 * 10**9 + 7])  # 32-, 64-, 96-bit forms
def test_every_timestamp_width_is_read(ts_ns: int) -> None:
    [q] = decode_quote_frame(msgpack.packb([_quote(t=msgpack.Timestamp.from_unix_nano(ts_ns))]))
    assert timestamp_ns(q.t) == ts_ns


@pytest.mark.parametrize("frame", [
    [{"T": "subscription", "quotes": ["AAPL"]}],
    [_quote(), {"T": "t", "S": "AAPL", "p": 1.0}],
    [_quote(bp="x")],
    [_quote(S=None)],
    {"T": "q"},
])
def test_anything_but_well_formed_quotes_goes_to_the_generic_path(frame: object) -> None:
    with pytest.raises(NotAQuoteFrame):
        decode_quote_frame(msgpack.packb(frame))


def test_a_quote_without_timestamp_is_refused_per_quote() -> None:
    quote = _quote()
    del quote["t"]
    [q] = decode_quote_frame(msgpack.packb([quote]))
    with pytest.raises(ValueError, match="timestamp"):
        timestamp_ns(q.t)
