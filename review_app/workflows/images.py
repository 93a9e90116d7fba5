"""The PNG codec of stored images: candidates keep their original image as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hardcase.miner.spec import as_uint8


def encode_png(image: np.ndarray) -> bytes:
    """Encode an image as PNG.

    Parameters
    ----------
    image : np.ndarray of shape (H, W), (H, W, 1) or (H, W, 3)
        Pixels, uint8 or float (converted by :func:`as_uint8`).

    Returns
    -------
    bytes
        A grayscale PNG for one channel, RGB for three.
    """
    image = as_uint8(image)
    array = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 array of shape (H, W, C), C = 1 for grayscale."""
    array = np.asarray(Image.open(io.BytesIO(data)))
    return array[..., None] if array.ndim == 2 else array
