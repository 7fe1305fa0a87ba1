"""Drawing with Pillow (and PyAV for MP4): heat-map overlays as a PNG grid, a GIF or an MP4, and a prompt with
each word shaded by its importance. Nothing here knows about models: inputs are arrays and numbers."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Frames smaller than this (short side, pixels) are enlarged so that heat maps and captions stay legible.
MIN_TILE_SIZE = 160
FONT_SIZE = 14
_PAD = 4


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def jet(values: np.ndarray) -> np.ndarray:
    """The 'jet' colour map: values in `[0, 1]` (any shape) -> uint8 RGB `(..., 3)`, blue to red."""
    x = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where red, green and blue peak
    return (np.clip(1.5 - np.abs(4.0 * (x - centres)), 0.0, 1.0) * 255).round().astype(np.uint8)


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend a heat map over a frame.

    Args:
        frame: `(H, W, 3)` uint8 RGB.
        heat: `(h, w)` values in `[0, 1]` (e.g. one patch grid), upsampled bilinearly to `(H, W)`.
        alpha: weight of the colour map.
    """
    height, width = frame.shape[:2]
    heat = np.asarray(
        Image.fromarray(np.asarray(heat, dtype=np.float32)).resize((width, height), Image.BILINEAR)
    )
    blended = (1.0 - alpha) * frame.astype(np.float32) + alpha * jet(heat).astype(np.float32)
    return Image.fromarray(blended.round().astype(np.uint8))


def _captioned(image: Image.Image, caption: str) -> Image.Image:
    """`image` under a dark strip holding `caption`."""
    strip = FONT_SIZE + 2 * _PAD
    canvas = Image.new("RGB", (image.width, image.height + strip), (20, 20, 20))
    canvas.paste(image, (0, strip))
    ImageDraw.Draw(canvas).text((_PAD, _PAD), caption, fill=(255, 255, 255), font=_font())
    return canvas


def attention_tiles(
    frames: np.ndarray, maps: np.ndarray, captions: Sequence[str], alpha: float = 0.5
) -> list[Image.Image]:
    """One captioned overlay per frame.

    Args:
        frames: `(T, H, W, 3)` uint8 RGB.
        maps: `(T, h, w)` heat maps in `[0, 1]`.
        captions: `T` strings drawn above the frames.
    """
    if not len(frames) == len(maps) == len(captions):
        raise ValueError(f"Got {len(frames)} frames, {len(maps)} maps and {len(captions)} captions.")
    tiles = []
    for frame, heat, caption in zip(frames, maps, captions, strict=True):
        tile = overlay(frame, heat, alpha)
        scale = max(1.0, MIN_TILE_SIZE / min(tile.size))
        if scale > 1.0:
            tile = tile.resize((round(tile.width * scale), round(tile.height * scale)), Image.NEAREST)
        tiles.append(_captioned(tile, caption))
    return tiles


def save_grid(tiles: Sequence[Image.Image], path: str | os.PathLike, columns: int = 4) -> None:
    """Tiles of one size in rows of `columns`, as one image (PNG from the suffix)."""
    columns = min(columns, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    width, height = tiles[0].size
    canvas = Image.new(
        "RGB", (columns * width + (columns + 1) * _PAD, rows * height + (rows + 1) * _PAD), (255, 255, 255)
    )
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        canvas.paste(tile, (_PAD + column * (width + _PAD), _PAD + row * (height + _PAD)))
    canvas.save(path)


def save_gif(tiles: Sequence[Image.Image], path: str | os.PathLike, duration_ms: int = 400) -> None:
    """An endlessly looping GIF with one frame per tile.

    Pillow merges identical consecutive frames: give the tiles distinct captions to keep one GIF frame each.
    """
    tiles[0].save(path, save_all=True, append_images=list(tiles[1:]), duration=duration_ms, loop=0)


def _video_encoder() -> str:
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise RuntimeError("PyAV has neither the libx264 nor the mpeg4 encoder: cannot write an MP4.")


def save_mp4(tiles: Sequence[Image.Image], path: str | os.PathLike, fps: int = 2) -> None:
    """An MP4 (H.264, or MPEG-4 part 2 without libx264) with one frame per tile, `fps` frames per second."""
    # yuv420p needs even sizes.
    width, height = tiles[0].width // 2 * 2, tiles[0].height // 2 * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream(_video_encoder(), rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for tile in tiles:
            frame = av.VideoFrame.from_ndarray(np.asarray(tile.crop((0, 0, width, height))), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _word_colour(value: float) -> tuple[int, int, int]:
    """`value` in `[-1, 1]` -> white to red for positive values, white to blue for negative ones."""
    fade = round(255 * (1.0 - min(abs(value), 1.0)))
    return (255, fade, fade) if value >= 0 else (fade, fade, 255)


def save_word_importance(
    words: Sequence[tuple[str, float]], path: str | os.PathLike, title: str = "", width: int = 720
) -> None:
    """The words on shaded boxes, wrapped to `width` pixels: red where the importance is positive, blue where
    it is negative, the strongest word at full colour (importances scaled by the largest magnitude)."""
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    peak = max((abs(score) for _, score in words), default=0.0) or 1.0
    line_height = FONT_SIZE + 3 * _PAD
    boxes, x, y = [], _PAD, _PAD + (line_height if title else 0)
    for word, score in words:
        box_width = round(measure.textlength(word, font=font)) + 2 * _PAD
        if x + box_width > width - _PAD and x > _PAD:
            x, y = _PAD, y + line_height
        boxes.append((x, y, box_width, word, score / peak))
        x += box_width + _PAD
    canvas = Image.new("RGB", (width, y + line_height + _PAD), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_PAD, _PAD), title, fill=(0, 0, 0), font=font)
    for x, y, box_width, word, value in boxes:
        draw.rectangle((x, y, x + box_width, y + line_height - _PAD), fill=_word_colour(value))
        draw.text((x + _PAD, y + _PAD), word, fill=(0, 0, 0), font=font)
    canvas.save(path)


__all__ = [
    "attention_tiles",
    "jet",
    "overlay",
    "save_gif",
    "save_grid",
    "save_mp4",
    "save_word_importance",
]
