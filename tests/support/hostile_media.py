"""Hostile input files, made at test time with PyAV and plain bytes (nothing is downloaded).

Each generator writes one file and returns its path. Byte-level damage is done on real clips made with
`tests.media.make_test_clip` (or the small writers here), so every file is a plausible upload: a real
header with something wrong behind it. ISO BMFF (mp4) boxes are located with a small box walker, so the
patches hit the intended box and not, say, the 'avc1' brand inside 'ftyp'.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.media import AUDIO_CHUNK, AUDIO_RATE, make_frame, make_test_clip

# Boxes that only contain other boxes (ISO/IEC 14496-12), walked by `find_boxes`.
CONTAINER_BOXES = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta"})
# Matroska elements (EBML ids) patched below.
MKV_DURATION_ID = b"\x44\x89"
MKV_CODEC_ID = b"\x86"


@dataclass(frozen=True)
class Box:
    """One ISO BMFF box: its type, where it starts, its total size and its header length."""

    type: bytes
    offset: int
    size: int
    header: int

    @property
    def payload(self) -> int:
        return self.offset + self.header

    @property
    def end(self) -> int:
        return self.offset + self.size


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """The boxes laid end to end in data[start:end] (64-bit and to-the-end sizes handled)."""
    end = len(data) if end is None else end
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        if size < header:
            raise ValueError(f"bad box size {size} at {offset}")
        yield Box(kind, offset, size, header)
        offset += size


def find_boxes(data: bytes, kind: bytes) -> list[Box]:
    """Every box of type `kind`, searching inside the container boxes (depth first)."""
    found: list[Box] = []

    def walk(start: int, end: int) -> None:
        for box in iter_boxes(data, start, end):
            if box.type == kind:
                found.append(box)
            if box.type in CONTAINER_BOXES:
                walk(box.payload, box.end)
            elif box.type == b"stsd":  # full box (4 bytes) + entry count (4 bytes), then sample entries
                walk(box.payload + 8, box.end)

    walk(0, len(data))
    return found


def one_box(data: bytes, kind: bytes) -> Box:
    boxes = find_boxes(data, kind)
    if len(boxes) != 1:
        raise ValueError(f"expected one {kind!r} box, found {len(boxes)}")
    return boxes[0]


# --- files that are not videos at all -------------------------------------------------------------


def text_file(path: Path) -> Path:
    """Plain text, e.g. a log saved as clip.mp4."""
    path.write_text("this is not a video\n" * 64)
    return path


def json_file(path: Path) -> Path:
    path.write_text('{"video": "clip.mp4", "frames": [1, 2, 3], "note": "JSON, not a container"}\n' * 16)
    return path


def png_file(path: Path, width: int = 32, height: int = 32) -> Path:
    """A valid PNG image (written by hand: signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + make_frame(0, width, height)[y].tobytes() for y in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
    path.write_bytes(png + chunk(b"IEND", b""))
    return path


def pdf_file(path: Path) -> Path:
    """A minimal one-page PDF."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    body = b"%PDF-1.4\n"
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(body)
    return path


def random_bytes(path: Path, size: int = 64 * 1024, seed: int = 0) -> Path:
    """Seeded random bytes that match no container signature (first byte and bytes 4-8 fixed)."""
    data = bytearray(random.Random(seed).randbytes(size))
    data[0] = 0xA5
    data[4:8] = b"\xa5\xa5\xa5\xa5"
    path.write_bytes(bytes(data))
    return path


def zero_length(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def fake_ftyp(path: Path, size: int = 16 * 1024, seed: int = 1) -> Path:
    """An 'ftyp' box (passes a magic-bytes sniff) followed by random bytes."""
    head = struct.pack(">I4s4sI4s4s", 24, b"ftyp", b"isom", 512, b"isom", b"mp41")
    path.write_bytes(head + random.Random(seed).randbytes(size))
    return path


def fake_transport_stream(path: Path, packets: int = 64, seed: int = 2) -> Path:
    """188-byte packets that start with the MPEG-TS sync byte but carry random bytes."""
    rng = random.Random(seed)
    path.write_bytes(b"".join(b"\x47" + rng.randbytes(187) for _ in range(packets)))
    return path


# --- damaged real clips ----------------------------------------------------------------------------


def truncated(source: Path, path: Path, keep: int) -> Path:
    """The first `keep` bytes of `source`."""
    path.write_bytes(source.read_bytes()[:keep])
    return path


def faststart_clip(path: Path, *, frames: int, width: int, height: int) -> Path:
    """An mp4 with its 'moov' before 'mdat' (streaming layout), so a truncated copy still has an index."""
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(make_frame(i, width, height), format="rgb24")))
        out.mux(video.encode(None))
    return path


def corrupt_samples(source: Path, path: Path, seed: int = 3, fill: int | None = None) -> Path:
    """`source` with every byte of its 'mdat' payload (the coded frames) overwritten: random bytes, or
    `fill` repeated. The header and index ('ftyp', 'moov') are untouched."""
    data = bytearray(source.read_bytes())
    mdat = one_box(bytes(data), b"mdat")
    length = mdat.end - mdat.payload
    garbage = random.Random(seed).randbytes(length) if fill is None else bytes([fill]) * length
    data[mdat.payload : mdat.end] = garbage
    path.write_bytes(bytes(data))
    return path


def damaged_moov(source: Path, path: Path) -> Path:
    """`source` with the sample table ('stbl') of its video track overwritten by 0xff bytes."""
    data = bytearray(source.read_bytes())
    stbl = find_boxes(bytes(data), b"stbl")[0]
    data[stbl.payload : stbl.end] = b"\xff" * (stbl.end - stbl.payload)
    path.write_bytes(bytes(data))
    return path


def renamed_box(source: Path, path: Path, kind: bytes, new: bytes) -> Path:
    """`source` with the type of its one `kind` box changed to `new` (e.g. hide 'moov')."""
    data = bytearray(source.read_bytes())
    box = one_box(bytes(data), kind)
    data[box.offset + 4 : box.offset + 8] = new
    path.write_bytes(bytes(data))
    return path


def unknown_video_codec(source: Path, path: Path, fourcc: bytes = b"zzzz") -> Path:
    """`source` with the video sample entry's fourcc ('avc1' in 'stsd') patched to an unknown one."""
    return renamed_box(source, path, b"avc1", fourcc)


def lying_dimensions(source: Path, path: Path, width: int, height: int) -> Path:
    """`source` with the width/height that the 'tkhd' and 'avc1' boxes declare replaced (the coded
    frames keep their real size): a header that lies about the frame size."""
    data = bytearray(source.read_bytes())
    avc1 = one_box(bytes(data), b"avc1")
    # VisualSampleEntry: 6 reserved + 2 data ref index + 16 pre-defined/reserved, then width, height (16 bit)
    struct.pack_into(">HH", data, avc1.payload + 24, width, height)
    for tkhd in find_boxes(bytes(data), b"tkhd"):
        version = data[tkhd.payload]
        at = tkhd.end - 8  # the last two fields: width, height as 16.16 fixed point
        if struct.unpack_from(">I", data, at)[0]:  # a video track (audio tracks declare 0x0)
            struct.pack_into(">II", data, at, width << 16, height << 16)
        assert version in (0, 1)
    path.write_bytes(bytes(data))
    return path


# --- valid files that must be refused --------------------------------------------------------------


def bomb_clip(path: Path, width: int, height: int) -> Path:
    """One black H.264 frame at a large size: a few kilobytes that decode to width*height pixels."""
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "51", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane, value in zip(frame.planes, (16, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return path


def many_frames(path: Path, frames: int, width: int = 16, height: int = 16) -> Path:
    """A long clip of tiny frames (container and extension from `path`)."""
    return make_test_clip(path, frames=frames, width=width, height=height, audio=False)


def empty_video_track(path: Path, width: int = 32, height: int = 32) -> Path:
    """An mp4 with an H.264 video track that holds no frame at all."""
    with av.open(str(path), mode="w") as out:
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        out.start_encoding()  # write the header although no packet follows
        out.mux(video.encode(None))
    return path


def mkv_clip(path: Path, frames: int, width: int = 16, height: int = 16) -> Path:
    """An H.264 Matroska clip (no audio)."""
    with av.open(str(path), mode="w", format="matroska") as out:
        video = out.add_stream("libx264", rate=24, options={"crf": "30", "preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            out.mux(video.encode(av.VideoFrame.from_ndarray(make_frame(i, width, height), format="rgb24")))
        out.mux(video.encode(None))
    return path


def lying_mkv_duration(source: Path, path: Path, seconds: float) -> Path:
    """A Matroska file whose Segment Info Duration (float, in ms at the default timecode scale) claims
    `seconds`: the header then claims far fewer (or more) frames than the file holds."""
    data = bytearray(source.read_bytes())
    at = data.find(MKV_DURATION_ID)
    if at < 0:
        raise ValueError("no Duration element")
    size_byte = data[at + 2]
    if size_byte == 0x88:
        struct.pack_into(">d", data, at + 3, seconds * 1000)
    elif size_byte == 0x84:
        struct.pack_into(">f", data, at + 3, seconds * 1000)
    else:
        raise ValueError(f"unexpected Duration size byte {size_byte:#x}")
    path.write_bytes(bytes(data))
    return path


def unknown_mkv_codec(source: Path, path: Path) -> Path:
    """A Matroska file whose video CodecID 'V_MPEG4/ISO/AVC' is replaced by an unknown one (same length)."""
    data = source.read_bytes()
    codec = b"V_MPEG4/ISO/AVC"
    if data.count(codec) != 1:
        raise ValueError("expected one H.264 CodecID")
    path.write_bytes(data.replace(codec, b"V_ZZZZZ/ISO/ZZZ"))
    return path


def audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An AAC sine tone in the container that `path`'s extension names (mp4/m4a or mkv), no video."""
    with av.open(str(path), mode="w") as out:
        sound = out.add_stream("aac", rate=AUDIO_RATE, format="fltp", layout="mono")
        total = round(seconds * AUDIO_RATE)
        t = np.arange(total, dtype=np.float32) / AUDIO_RATE
        samples = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        for start in range(0, total, AUDIO_CHUNK):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + AUDIO_CHUNK], format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, start, Fraction(1, AUDIO_RATE)
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return path


def _annexb(width: int, height: int, frames: int, first: int) -> bytes:
    """A raw H.264 (Annex B) stream of `frames` frames, with its own SPS/PPS."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base, codec.framerate = Fraction(1, 24), Fraction(24)
    codec.options = {"crf": "30", "preset": "ultrafast"}
    chunks: list[bytes] = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(make_frame(first + i, width, height), format="rgb24")
        frame.pts = i
        chunks.extend(bytes(p) for p in codec.encode(frame))
    chunks.extend(bytes(p) for p in codec.encode(None))
    return b"".join(chunks)


def size_change_stream(path: Path, segments: Sequence[tuple[int, int, int]]) -> Path:
    """An MPEG-TS file whose one H.264 stream changes frame size mid-way: `segments` are (width,
    height, frames), each coded separately (its own SPS) and concatenated, as a splicer would."""
    raw = path.with_suffix(".h264")
    first = 0
    with raw.open("wb") as handle:
        for width, height, frames in segments:
            handle.write(_annexb(width, height, frames, first))
            first += frames
    with av.open(str(raw), format="h264") as source, av.open(str(path), mode="w", format="mpegts") as out:
        video = out.add_stream_from_template(source.streams.video[0])
        video.time_base = Fraction(1, 90000)
        for index, packet in enumerate(p for p in source.demux(video=0) if p.size):
            packet.stream = video
            packet.pts = packet.dts = index * 3750  # 24 fps at 90 kHz
            packet.time_base = Fraction(1, 90000)
            out.mux(packet)
    raw.unlink()
    return path
