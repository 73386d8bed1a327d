"""Y'CbCr <-> RGB with the matrix and range a stream declares, and the tags that carry them over.

PyAV 16's reformatter does not reliably honour source colourspaces (a frame tagged BT.709 converts
with BT.601 coefficients), so decoding applies the matrix here, in numpy, from the standard
coefficients. Encoding starts from RGB, where swscale does honour the destination matrix and range.
Frames are decoded to 4:4:4 at 16 bits (sws only resamples chroma and shifts bits), so 8-bit and
10-bit input go through the same code; the model works on 8-bit RGB (10-bit input loses its two least
significant bits) and the output is 8-bit 4:2:0. Untagged input is read as players read it: BT.601
below 720 lines, BT.709 from 720 up, limited range. The output is always tagged with what was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# AVColorSpace -> (Kr, Kb)
_KR_KB = {
    1: (0.2126, 0.0722),  # BT.709
    4: (0.30, 0.11),  # FCC
    5: (0.299, 0.114),  # BT.470BG (BT.601 625)
    6: (0.299, 0.114),  # SMPTE 170M (BT.601 525)
    7: (0.212, 0.087),  # SMPTE 240M
    9: (0.2627, 0.0593),  # BT.2020 non-constant luminance
    10: (0.2627, 0.0593),  # BT.2020 constant luminance (approximated as non-constant)
}
_PRIMARIES_OF_SPACE = {1: 1, 4: 6, 5: 5, 6: 6, 7: 7, 9: 9, 10: 9}  # AVColorSpace -> AVColorPrimaries
UNSPECIFIED = 2
RGB_SPACE = 0
LIMITED, FULL = 1, 2  # AVColorRange MPEG, JPEG
BT709, SMPTE170M = 1, 6


@dataclass(frozen=True)
class ColourTags:
    """AVColorSpace, AVColorPrimaries, AVColorTransferCharacteristic and AVColorRange of a stream."""

    space: int
    primaries: int
    transfer: int
    range: int

    @property
    def full_range(self) -> bool:
        return self.range == FULL


def resolve_tags(space: int, primaries: int, transfer: int, colour_range: int, height: int) -> ColourTags:
    """The tags as declared, with unspecified ones filled in the way players fill them."""
    if space not in _KR_KB:
        space = BT709 if height >= 720 else SMPTE170M
    if primaries in (0, UNSPECIFIED):
        primaries = _PRIMARIES_OF_SPACE[space]
    if transfer in (0, UNSPECIFIED):
        transfer = SMPTE170M if _PRIMARIES_OF_SPACE[space] in (5, SMPTE170M) else BT709
    return ColourTags(space, primaries, transfer, FULL if colour_range == FULL else LIMITED)


def _scales(tags: ColourTags) -> tuple[float, float, float]:
    """(black level, luma span, chroma span) in 8-bit levels."""
    return (0.0, 255.0, 255.0) if tags.full_range else (16.0, 219.0, 224.0)


def ycbcr_to_rgb(ycbcr16: np.ndarray, tags: ColourTags) -> np.ndarray:
    """(H, W, 3) uint16 Y'CbCr 4:4:4 (levels << 8, any bit depth) -> (H, W, 3) uint8 RGB."""
    kr, kb = _KR_KB[tags.space]
    black, luma, chroma = _scales(tags)
    levels = ycbcr16.astype(np.float32) * (1.0 / 256.0)
    y = (levels[..., 0] - black) / luma
    pb = (levels[..., 1] - 128.0) / chroma
    pr = (levels[..., 2] - 128.0) / chroma
    r = y + 2.0 * (1.0 - kr) * pr
    b = y + 2.0 * (1.0 - kb) * pb
    g = (y - kr * r - kb * b) / (1.0 - kr - kb)
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
