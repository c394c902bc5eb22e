"""promptflow.contracts.multimedia: PFBytes, Image and Text, as promptflow defines them."""

import base64
import hashlib


def _guess_mime(value):
    """The MIME type of image bytes by their signature (promptflow uses `filetype`)."""
    b = bytes(value[:16])
    if b.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if b.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if b.startswith(b"GIF87a") or b.startswith(b"GIF89a"):
        return "image/gif"
    if len(b) >= 12 and b.startswith(b"RIFF") and b[8:12] == b"WEBP":
        return "image/webp"
    if b.startswith(b"BM"):
        return "image/bmp"
    if b.startswith(b"II*\x00") or b.startswith(b"MM\x00*"):
        return "image/tiff"
    if b.startswith(b"\x00\x00\x01\x00"):
        return "image/x-icon"
    return None


class PFBytes(bytes):
    """A bytes object with a MIME type and, optionally, the URL it came from."""

    def __new__(cls, value, *args, **kwargs):
        return super().__new__(cls, value)

    def __init__(self, value, mime_type, source_url=None):
        super().__init__()
        self._hash = hashlib.sha1(value).hexdigest()[:8]
        self._mime_type = mime_type.lower()
        self._source_url = source_url

    @property
    def source_url(self):
        return self._source_url

    def to_base64(self, with_type=False):
        """The base64 text of the bytes; with `with_type`, as a `data:<mime>;base64,` URI."""
        if with_type:
            return f"data:{self._mime_type};base64," + base64.b64encode(self).decode("utf-8")
        return base64.b64encode(self).decode("utf-8")


class Image(PFBytes):
    """An image: PFBytes whose MIME type is guessed from the bytes when not given."""

    def __init__(self, value, mime_type=None, source_url=None):
        if mime_type is None:
            mime_type = _guess_mime(value)
            if mime_type is None or not mime_type.startswith("image/"):
                mime_type = "image/*"
        return super().__init__(value, mime_type, source_url)

    def __str__(self):
        return f"Image({self._hash})"

    def __repr__(self):
        return f"Image({self._hash})"

    def serialize(self, encoder=None):
        """`str(self)`, or what `encoder` makes of the image."""
        if encoder is None:
            return self.__str__()
        return encoder(self)


class Text(str):
    def __new__(cls, value, annotations=None):
        obj = str.__new__(cls, value)
        obj._annotations = annotations
        return obj

    @classmethod
    def deserialize(cls, data):
        text = data.get("text", "")
        if isinstance(text, dict):
            return cls(value=text.get("value", ""), annotations=text.get("annotations", []))
        return cls(value=text)

    def serialize(self):
        if self._annotations is None:
            return {"type": "text", "text": self}
        return {"type": "text", "text": {"value": self, "annotations": self._annotations}}
