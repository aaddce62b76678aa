"""SPDY/3.1 framing and header compression (runtimed.streaming.spdy)."""

from __future__ import annotations

import zlib

import pytest

from runtimed.streaming import spdy

# The first frame client-go (crictl exec, moby/spdystream) sends after the upgrade: a
# SYN_STREAM for stream 1 with the header streamType: error, compressed by Go's zlib with
# the SPDY dictionary (its Adler-32, e3c6a7c2, is in the zlib header).
CLIENT_GO_SYN_STREAM = bytes.fromhex(
    "800300010000002a0000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a5a5494"
    "5f04000000ffff"
)


def test_dictionary_is_the_specs() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2


def test_decodes_what_client_go_sends() -> None:
    frames = spdy.FrameReader().feed(CLIENT_GO_SYN_STREAM)
    assert frames == [
        spdy.SynStream(
            stream_id=1,
            associated_id=0,
            priority=0,
            headers={"streamtype": ["error"]},
            fin=False,
            unidirectional=False,
        )
    ]


def test_header_blocks_share_one_zlib_stream_per_direction() -> None:
    sender, receiver = spdy.HeaderCompressor(), spdy.FrameReader()
    wire = b""
    blocks = [
        {"streamType": "error", "port": "8080", "requestID": "0"},
        {"streamType": "data", "port": "8080", "requestID": "0"},
        {"x-multi": ["a", "b"]},
    ]
    for i, headers in enumerate(blocks):
        wire += spdy.encode_syn_stream(sender, 2 * i + 1, headers, fin=i == 2)
    # Byte by byte: the reader keeps partial frames until they are whole.
    frames = [f for b in wire for f in receiver.feed(bytes([b]))]
    assert [f.headers for f in frames] == [
        {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]},
        {"streamtype": ["data"], "port": ["8080"], "requestid": ["0"]},
        {"x-multi": ["a", "b"]},
    ]
    assert [f.stream_id for f in frames] == [1, 3, 5]
    assert [f.fin for f in frames] == [False, False, True]
    # Later blocks repeat earlier names: the shared stream makes them cheaper.
    assert len(spdy.encode_syn_reply(sender, 1, blocks[0])) < len(wire) / 3


def test_control_and_data_frames_round_trip() -> None:
    compressor = spdy.HeaderCompressor()
    wire = b"".join(
        [
            spdy.encode_syn_reply(compressor, 7, {"a": "b"}, fin=True),
            spdy.encode_data(7, b"payload"),
            spdy.encode_data(7, b"", fin=True),
            spdy.encode_rst_stream(9, spdy.CANCEL),
            spdy.encode_ping(3),
            spdy.encode_goaway(7, spdy.GOAWAY_OK),
            spdy.encode_window_update(7, 65536),
        ]
    )
    assert spdy.FrameReader().feed(wire) == [
        spdy.SynReply(7, {"a": ["b"]}, True),
        spdy.Data(7, b"payload", False),
        spdy.Data(7, b"", True),
        spdy.RstStream(9, spdy.CANCEL),
        spdy.Ping(3),
        spdy.GoAway(7, spdy.GOAWAY_OK),
        spdy.WindowUpdate(7, 65536),
    ]


def test_settings_and_unknown_frames() -> None:
    settings = bytes.fromhex("80030004000000140000000200000007000100000000000400000064")
    credential = bytes.fromhex("800300100000000400000000")
    assert spdy.FrameReader().feed(settings + credential) == [
        spdy.Settings([(0, 7, 65536), (0, 4, 100)]),
        spdy.Unknown(16),
    ]


def test_big_data_is_cut_into_frames() -> None:
    data = b"x" * (spdy.MAX_DATA + 10)
    frames = spdy.FrameReader(max_frame=spdy.MAX_DATA).feed(spdy.encode_data(3, data, fin=True))
    assert [(len(f.data), f.fin) for f in frames] == [(spdy.MAX_DATA, False), (10, True)]


@pytest.mark.parametrize(
    "wire, message",
    [
        (bytes.fromhex("8002000100000000"), "unsupported SPDY version 2"),
        (bytes.fromhex("80030003000000020000"), "short control frame"),
        (bytes.fromhex("8003000100000010000000010000000000000000deadbeef"), "compression"),
        (bytes.fromhex("00000001ffffffff"), "too large"),
    ],
)
def test_bad_frames_are_protocol_errors(wire: bytes, message: str) -> None:
    reader = spdy.FrameReader(max_frame=1 << 20)
    with pytest.raises(spdy.SpdyError, match=message):
        reader.feed(wire)


def test_truncated_header_block() -> None:
    with pytest.raises(spdy.SpdyError, match="header block"):
        spdy.parse_header_block(b"\x00\x00\x00\x02\x00\x00\x00\x01a\x00\x00\x00\x05b")
