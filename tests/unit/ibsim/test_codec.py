"""The TWS wire codec: framing, handshake, field reads; fuzzed so bad input never crashes."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibsim import codec
from ibsim.codec import FieldReader, FrameDecoder, ProtocolError


def test_frames_round_trip_through_the_decoder():
    decoder = FrameDecoder(expect_api_sign=False)
    data = codec.encode_frame([49, 1, 1700000000]) + codec.encode_frame(["a", "", True, None])
    payloads = decoder.feed(data)
    assert [codec.split_fields(p) for p in payloads] == [
        ["49", "1", "1700000000"],
        ["a", "", "1", ""],
    ]


def test_decoder_waits_for_a_whole_frame_split_anywhere():
    frame = b"API\0" + codec.frame_payload(b"v157..178")
    decoder = FrameDecoder()
    got = []
    for byte in frame:
        got += decoder.feed(bytes([byte]))
    assert got == [b"v157..178"]


def test_handshake_with_options_negotiates_178_at_most():
    hs = codec.parse_handshake(b"v157..190 +PACEAPI")
    assert (hs.min_version, hs.max_version, hs.options) == (157, 190, "+PACEAPI")
    assert codec.negotiate_version(hs) == 178
    assert codec.negotiate_version(codec.parse_handshake(b"v100..176")) == 176


@pytest.mark.parametrize("text", [b"hello", b"v178..157", b"\xff\xfe"])
def test_bad_handshake_names_the_problem(text):
    with pytest.raises(ProtocolError, match="handshake"):
        codec.parse_handshake(text)


def test_client_too_old_is_refused():
    with pytest.raises(ProtocolError, match="below"):
        codec.negotiate_version(codec.parse_handshake(b"v100..150"))


def test_wrong_prefix_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="API"):
        FrameDecoder().feed(b"GET / HTTP/1.1\r\n")


def test_oversized_frame_is_refused_not_buffered():
    decoder = FrameDecoder(expect_api_sign=False, max_frame=100)
    with pytest.raises(ProtocolError, match="above limit"):
        decoder.feed(struct.pack(">I", 1000) + b"x")


def test_field_reader_names_field_and_position():
    reader = FieldReader(["3", "abc"], message="placeOrder")
    assert reader.int("msgId") == 3
    with pytest.raises(ProtocolError, match=r"'orderId' at 1"):
        reader.int("orderId")
    with pytest.raises(ProtocolError, match="missing field 'x'"):
        FieldReader([], message="m").str("x")


def test_unset_double_is_sent_empty_and_floats_compactly():
    assert codec.format_field(codec.UNSET_DOUBLE) == ""
    assert codec.format_field(190.0) == "190"
    assert codec.format_field(1.08005) == "1.08005"
    assert codec.format_field(False) == "0"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_decoder_fuzz_only_raises_protocol_errors(chunks):
    decoder = FrameDecoder(max_frame=1 << 16)
    try:
        for chunk in chunks:
            for payload in decoder.feed(chunk):
                codec.split_fields(payload)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=12))
def test_field_reader_fuzz_only_raises_protocol_errors(fields):
    reader = FieldReader(fields, message="fuzz")
    try:
        reader.int("a")
        reader.float("b")
        reader.bool("c")
        reader.str("d")
    except ProtocolError:
        pass
