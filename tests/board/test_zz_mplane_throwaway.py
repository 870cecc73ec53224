# THROWAWAY (mplane dev): delete when real board tests exist.
import json

from firmware.core.pump import Pump
from protocol import codec, framing
from protocol import messages as m


def test_roundtrip_get_status():
    enc = codec.Encoder()
    wire = bytes(enc.encode(m.GET_STATUS, 7, ()))
    r = framing.FrameReader()
    res = [r.push(b) for b in wire]
    assert res[-1] == framing.FRAME
    d = codec.Decoded()
    assert codec.decode(r.frame, r.length, d) == 0
    assert d.seq == 7 and d.type == m.GET_STATUS


def test_pump_steps():
    p = Pump(250, 20_000_000, 20_000_000)
    p.set_continuous(1_000_000, 1000)
    total = 0
    for _ in range(86400):
        total += p.advance(1000)
    assert total * 250 == 1_000_000, total


def test_reads_vector_file():
    with open("protocol/vectors/mplane_throwaway.json") as f:
        assert json.load(f)["ok"] == 1


def test_fails_on_purpose():
    assert 1 + 1 == 3, "deliberate"
