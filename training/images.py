"""How an image file becomes pixels: the one decoder of training, evaluation, export's
calibration (all through training/data.py), the image-folder index (training/image_folder.py)
and `python -m export.predict`, so that no path reads a file differently from another.

    pixels = decode(tf.io.read_file("photo.jpg"), num_channels=3)  # float32 (H, W, 3), 0..255

Decisions:
- Formats: those TensorFlow decodes, `IMAGE_EXTENSIONS` (JPEG, PNG, GIF, BMP, WebP); an
  animated GIF or PNG gives its first frame; an 8-bit (palette) BMP gives its colours, which
  TensorFlow's BMP decoder leaves out (`_decode_8_bit`). TensorFlow's decoders run in the
  tf.data graph (and on any worker); Pillow reads more formats but would need a Python call
  per image.
- Values: float32 on the 8-bit scale 0..255. An 8-bit file gives its stored values exactly; a
  16-bit PNG (gray or RGB) gives v * 255 / 65535 for a stored v (= v / 257, unrounded), not
  TensorFlow's default 8-bit reading (the high byte, v // 256: 0.5 lower on average).
- Channels: a gray file (1-bit, L), gray with alpha, RGB, RGBA, a palette (expanded to its
  colours) or CMYK JPEG (converted to RGB by libjpeg) becomes the model's `num_channels`:
  alpha is dropped, not composited (as Keras's `image_dataset_from_directory` and Pillow's
  `convert("RGB")` do), gray is tiled to RGB, RGB becomes gray with
  `tf.image.rgb_to_grayscale` (ITU-R 601 weights 0.2989, 0.5870, 0.1140).
- EXIF orientation is not applied: pixels are used as stored in the file, as Keras's
  `image_dataset_from_directory`, `tf.io.decode_image` and torchvision's `ImageFolder` do. A
  camera photo tagged "rotate 90" is trained on, evaluated and predicted on lying on its side,
  the same way in every path. To use the upright view, rotate the files once (`exiftran -ai`,
  or Pillow's `ImageOps.exif_transpose`); an app must feed the pixels in the same convention.
"""

import re

import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 65535 = 255 * 257: a 16-bit value v is v / 257 on the 8-bit scale, and libpng stores an
# 8-bit value x read as 16 bits as 257 x, so x / 257 is x again, exactly.
SIXTEEN_BIT_PER_EIGHT_BIT = 257.0
BMP_SIGNATURE = b"BM"
# A BMP's file header (14 bytes) and BITMAPINFOHEADER (40), which every current writer uses.
BMP_HEADERS_BYTES = 54


def decode(encoded, num_channels):
    """The pixels of an encoded image file (a scalar tf.string) as the model takes them.

    Returns float32 (height, width, num_channels) in [0, 255]. Raises TensorFlow's
    InvalidArgumentError for bytes that are not an image it decodes.

    Args:
        encoded: scalar tf.string. The file's bytes (`tf.io.read_file(path)`).
        num_channels: int. 1 (gray) or 3 (RGB).
    """
    is_png = tf.strings.substr(encoded, 0, len(PNG_SIGNATURE)) == PNG_SIGNATURE
    image = tf.cond(
        is_png,
        # Only PNG holds 16 bits per value among these formats; read at 16 bits, 8-bit PNGs
        # come back exactly.
        lambda: tf.cast(tf.io.decode_png(encoded, dtype=tf.uint16), tf.float32)
        / SIXTEEN_BIT_PER_EIGHT_BIT,
        lambda: tf.cast(_decode_8_bit(encoded), tf.float32),
    )
    is_gray = tf.shape(image)[-1] <= 2  # gray, or gray with alpha
    if num_channels == 1:
        image = tf.cond(
            is_gray, lambda: image[..., :1], lambda: tf.image.rgb_to_grayscale(image[..., :3])
        )
    else:
        image = tf.cond(
            is_gray, lambda: tf.image.grayscale_to_rgb(image[..., :1]), lambda: image[..., :3]
        )
    image.set_shape([None, None, num_channels])
    return image


def _decode_8_bit(encoded):
    """JPEG, GIF, BMP or WebP as uint8 (height, width, channels), palette BMPs in their colours.

    TensorFlow's BMP decoder (tf.io.decode_bmp, TF 2.21) ignores an 8-bit BMP's colour table
    and returns the palette indices as one gray channel: a Windows Paint 256-colour image
    reaches the model as index noise, while Pillow, viewers and phones show its colours. The
    colours are looked up here. An 8-bit BMP always has a colour table, and only an 8-bit BMP
    decodes to one channel, so a TensorFlow that applies the table itself (three channels)
    skips this.
    """
    image = tf.io.decode_image(encoded, expand_animations=False)
    is_bmp = tf.strings.substr(encoded, 0, len(BMP_SIGNATURE)) == BMP_SIGNATURE
    return tf.cond(
        is_bmp & (tf.shape(image)[-1] == 1), lambda: _bmp_colors(encoded, image), lambda: image
    )


def _bmp_colors(encoded, indices):
    """The colours of an 8-bit BMP's palette `indices`: gray (one channel) for a gray table."""
    header = tf.io.decode_raw(tf.strings.substr(encoded, 0, BMP_HEADERS_BYTES), tf.uint8)

    def little_endian(offset, size):
        return sum(tf.cast(header[offset + i], tf.int32) * 256**i for i in range(size))

    table_start = 14 + little_endian(14, 4)  # after the file header and the info header
    count = little_endian(46, 4)  # colours used; 0 means all 256
    count = tf.where(count == 0, 256, count)
    table = tf.io.decode_raw(tf.strings.substr(encoded, table_start, 4 * count), tf.uint8)
    rgb = tf.reverse(tf.reshape(table, [-1, 4])[:, :3], axis=[1])  # stored B, G, R, 0
    is_gray = tf.reduce_all(rgb == rgb[:, :1])
    colors = tf.cond(is_gray, lambda: rgb[:, :1], lambda: rgb)
    return tf.gather(colors, tf.cast(indices[..., 0], tf.int32))


def decode_error(error):
    """TensorFlow's own words for why bytes do not decode (its op and device names left out)."""
    message = re.sub(r"\{\{.*?\}\}|\[Op:.*", "", error.message).strip()
    return f"{type(error).__name__}: {message}"
