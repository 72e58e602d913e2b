"""Images a client sends with its message: checked, decoded, made :class:`ImagePart` values.

Both APIs that take images (the stream endpoint's ``images``, /v1's ``image_url`` data URLs)
hold them to the same rules: PNG, JPEG, WebP or GIF (415 otherwise, also when the bytes are
not the image the media type says: a provider would refuse them later, less clearly), each
at most ``limits.max_image_bytes`` decoded (413), at most ``limits.max_images`` in one request
(413). sluice fetches nothing a client names, so an image is always its bytes, never a URL.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from server.contract import ImagePart
from server.http.errors import ApiCode, ApiError

__all__ = ["IMAGE_TYPES", "ImageReader"]

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")

_DATA_URL = re.compile(r"data:([^;,]*)((?:;[^;,]*)*),", re.ASCII)


def _sniffed(data: bytes) -> str | None:
    """The media type the bytes' signature says, among the accepted ones."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass
class ImageReader:
    """Reads one request's images, counting them against the request's allowance.

    ``base64_chars`` adds up the base64 text read, so that the handler can hold the rest of
    the body to ``limits.max_body_bytes``."""

    max_image_bytes: int
    max_images: int
    count: int = 0
    base64_chars: int = 0

    def read(self, encoded: str, media_type: str, where: str) -> ImagePart:
        """An image from its base64 and declared media type; ``where`` names it in errors."""
        media_type = media_type.strip().lower()
        if media_type == "image/jpg":
            media_type = "image/jpeg"
        if media_type not in IMAGE_TYPES:
            raise ApiError(
                415,
                ApiCode.UNSUPPORTED_MEDIA_TYPE,
                f"'{where}' is {media_type or 'of no type'}: send PNG, JPEG, WebP or GIF.",
                extra={"param": where},
            )
        self.count += 1
        if self.count > self.max_images:
            raise ApiError(
                413,
                ApiCode.TOO_LARGE,
                f"At most {self.max_images} images may be sent in one request.",
                extra={"param": where},
            )
        self.base64_chars += len(encoded)
        # Checked before decoding, from the base64's length: an oversized image is refused
        # without being decoded.
        if len(encoded.rstrip("=")) * 3 // 4 > self.max_image_bytes:
            raise self._too_large(where)
        try:
            data = binascii.a2b_base64(encoded.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ApiError(
                400, ApiCode.BAD_REQUEST, f"'{where}' is not valid base64.", extra={"param": where}
            ) from None
        if len(data) > self.max_image_bytes:
            raise self._too_large(where)
        if _sniffed(data) != media_type:
            raise ApiError(
                415,
                ApiCode.UNSUPPORTED_MEDIA_TYPE,
                f"'{where}' is not a {media_type} image.",
                extra={"param": where},
            )
        return ImagePart(data, media_type)

    def read_url(self, url: str, where: str) -> ImagePart:
        """An image from an OpenAI ``image_url``: a base64 ``data:`` URL only."""
        if url[:8].lower().startswith(("http://", "https://")):
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"'{where}' is a web address: sluice fetches nothing a client names. Send the"
                " image itself, as a data URL (data:image/png;base64,...).",
                extra={"param": where},
            )
        found = _DATA_URL.match(url)
        if found is None:
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"'{where}' must be a data URL (data:image/png;base64,...).",
                extra={"param": where},
            )
        if ";base64" not in found.group(2).lower():
            raise ApiError(
                400,
                ApiCode.BAD_REQUEST,
                f"'{where}' must be a base64 data URL (data:image/png;base64,...).",
                extra={"param": where},
            )
        return self.read(url[found.end() :], found.group(1), where)

    def _too_large(self, where: str) -> ApiError:
        return ApiError(
            413,
            ApiCode.TOO_LARGE,
            f"'{where}' is over {self.max_image_bytes} bytes.",
            extra={"param": where},
        )
