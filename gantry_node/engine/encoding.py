"""An instance as DICOM Part 10 bytes, in memory (what verification checks is what is written).

`encode_dataset` gives exactly the bytes of pydicom's `ds.save_as(buffer, enforce_file_format=True)`.
For the transfer syntaxes the node writes (little endian, explicit or implicit VR, native or
encapsulated pixels) it follows pydicom's `dcmwrite` / `write_dataset` / `write_data_element`
step by step and encodes each value with pydicom's own writer for its VR, but collects the pieces
in a list: no deep copy of the file meta, no seeking, one copy of the pixel data. Anything else
(big endian, deflate, private transfer syntaxes, buffered values, values that pydicom would turn
into UN, any exception) is written by pydicom itself, so its output and errors stay pydicom's.
tests/test_deid_encoding.py compares both on many datasets; scripts/check_same_output.py on whole
corpora.
"""

from __future__ import annotations

import copy
from io import BytesIO
from struct import Struct

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr, writers
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import AMBIGUOUS_VR, CUSTOMIZABLE_CHARSET_VR, EXPLICIT_VR_LENGTH_32, IS, VR, DSdecimal, DSfloat

_UL = Struct("<L")
_LONG_HEADER = Struct("<HH2s2xL")  # explicit VR with a 4-byte length: tag, VR, reserved, length
_SHORT_HEADER = Struct("<HH2sH")   # explicit VR with a 2-byte length
_IMPLICIT_HEADER = Struct("<HHL")
_ITEM = b"\xfe\xff\x00\xe0"
_ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_UNDEFINED = 0xFFFFFFFF
_PREAMBLE = b"\x00" * 128


class _Unsupported(Exception):
    """A case the fast path leaves to pydicom (which then writes it, or raises its own error)."""


class Encoded:
    """An encoded instance as the pieces `encode_parts` collected, not joined: a bulk value
    (the pixel data) is the dataset's own bytes object, so a 1 GiB instance is not held twice.
    `bytes(encoded)` joins them (a copy); `write_to(f)` writes them in order."""

    __slots__ = ("parts", "size")

    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts
        self.size = sum(len(p) for p in parts)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)

    def write_to(self, f) -> None:
        for part in self.parts:
            f.write(part)


def encode_dataset(ds: Dataset) -> bytes:
    """Preamble, file meta and dataset, in the transfer syntax of the dataset's file meta."""
    return bytes(encode_parts(ds))


def encode_parts(ds: Dataset) -> Encoded:
    """What `encode_dataset` gives, as its pieces (no copy of the pixel data)."""
    try:
        return Encoded(_encode_parts(ds))
    except Exception:  # noqa: BLE001 -- pydicom decides: the same bytes, or the same error
        return Encoded([_pydicom_encode(ds)])


def _pydicom_encode(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _encode(ds: Dataset) -> bytes:
    """pydicom's dcmwrite(enforce_file_format=True), for little endian public transfer syntaxes."""
    return b"".join(_encode_parts(ds))


def _encode_parts(ds: Dataset) -> list[bytes]:
    """`_encode`'s pieces, not joined."""
    if any(tag >> 16 in (0, 2) for tag in ds._dict):
        raise _Unsupported("group 0000 or 0002 in the dataset")
    source_meta = getattr(ds, "file_meta", None)
    if not isinstance(source_meta, FileMetaDataset):
        raise _Unsupported("no FileMetaDataset")
    tsyntax = source_meta.get("TransferSyntaxUID", None)
    if (not isinstance(tsyntax, UID) or tsyntax.is_private or not tsyntax.is_transfer_syntax
            or not tsyntax.is_little_endian or tsyntax == DeflatedExplicitVRLittleEndian):
        raise _Unsupported("transfer syntax")
    implicit = tsyntax.is_implicit_VR
    preamble = getattr(ds, "preamble", None)
    if preamble and len(preamble) != 128:
        raise _Unsupported("preamble")

    meta = _ready_meta(ds, source_meta)
    if "PixelData" in ds:
        ds["PixelData"].is_undefined_length = tsyntax.is_compressed
    length_element, body = _meta_group(meta if meta is not None else _meta_for(ds, source_meta))
    parts: list[bytes] = [preamble or _PREAMBLE, b"DICM", *length_element, body]
    _write_dataset(parts, ds, implicit, default_encoding)
    return parts


_REQUIRED_META = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def _ready_meta(ds: Dataset, source: FileMetaDataset) -> dict | None:
    """The file meta elements as they are, when dcmwrite would change nothing but add the group
    length (the engine's file meta: every required element set, the media storage UIDs those of
    the dataset, no raw or ambiguous element); None when it would, and `_meta_for` must copy it."""
    elements = source._dict
    if 0x00020000 in elements or 0x00020013 not in elements:
        return None
    for elem in elements.values():
        if not isinstance(elem, DataElement) or elem.is_buffered or elem.VR in AMBIGUOUS_VR or elem.tag >> 16 != 2:
            return None
    if any(elements[tag].is_empty for tag in _REQUIRED_META if tag in elements) or \
            not all(tag in elements for tag in _REQUIRED_META):
        return None
    for meta_tag, keyword in ((0x00020002, "SOPClassUID"), (0x00020003, "SOPInstanceUID")):
        value = ds.get(keyword, None)
        if value and value != elements[meta_tag].value:
            return None
    return elements


def _meta_group(meta: FileMetaDataset | dict) -> tuple[list[bytes], bytes]:
    """write_file_meta_info: the group length element (12 bytes: a UL) and what it counts."""
    group: list[bytes] = []
    if isinstance(meta, dict):  # only DataElements of plain VRs: nothing for write_dataset to convert
        converted = _Encodings(default_encoding)
        for tag in sorted(meta):
            _write_element(group, meta[tag], False, default_encoding, converted)
        body = b"".join(group)
        return [_SHORT_HEADER.pack(0x0002, 0x0000, b"UL", 4), _UL.pack(len(body))], body
    _write_dataset(group, meta, False, default_encoding, skip=0x00020000)
    body = b"".join(group)
    length_element: list[bytes] = []
    for value in (None, len(body)):
        if value is not None:
            meta.FileMetaInformationGroupLength = value
        length_element = []
        _write_element(length_element, meta[0x00020000], False, default_encoding, _Encodings(default_encoding))
        if sum(len(p) for p in length_element) != 12:
            raise _Unsupported("file meta group length element of other than 12 bytes")
    return length_element, body


def _meta_for(ds: Dataset, source: FileMetaDataset) -> FileMetaDataset:
    """The file meta dcmwrite writes: a copy of `source` (elements copied, values shared: they
    are replaced, never changed in place) with the media storage UIDs of `ds`, the Type 1
    defaults pydicom adds, and a group length element."""
    meta = FileMetaDataset()
    state = dict(source.__dict__)
    if not all(isinstance(elem, RawDataElement) or (isinstance(elem, DataElement) and not elem.is_buffered)
               for elem in source._dict.values()):
        raise _Unsupported("file meta element")
    state["_dict"] = {tag: copy.copy(elem) for tag, elem in source._dict.items()}
    state["_private_blocks"] = {}
    meta.__dict__.update(state)
    meta_class = meta.get("MediaStorageSOPClassUID", None)
    ds_class = ds.get("SOPClassUID", None)
    if meta_class is None or (ds_class and ds_class != meta_class):
        meta.MediaStorageSOPClassUID = ds_class
    meta_instance = meta.get("MediaStorageSOPInstanceUID", None)
    ds_instance = ds.get("SOPInstanceUID", None)
    if meta_instance is None or (ds_instance and ds_instance != meta_instance):
        meta.MediaStorageSOPInstanceUID = ds_instance
    validate_file_meta(meta, enforce_standard=True)
    if "FileMetaInformationGroupLength" not in meta:
        meta.FileMetaInformationGroupLength = 0
    return meta


class _Encodings:
    """convert_encodings of a dataset's character set, computed once (pydicom computes it for
    every element it writes; it depends only on the character set and the configuration)."""

    def __init__(self, encodings) -> None:
        self.encodings = encodings
        self._converted = None

    def converted(self) -> list[str]:
        if self._converted is None:
            self._converted = convert_encodings(self.encodings or [default_encoding])
        return self._converted


def _write_dataset(parts: list[bytes], ds: Dataset, implicit: bool, parent_encoding, skip: int = -1) -> None:
    """pydicom's write_dataset, little endian."""
    get_item = ds.get_item
    if (implicit, True) != ds.original_encoding or ds.original_character_set != ds._character_set:
        ds = correct_ambiguous_vr(ds, True)
        get_item = ds.__getitem__
    encodings = ds.get("SpecificCharacterSet", parent_encoding)
    converted = _Encodings(encodings)
    context = _memo_context(ds, implicit, encodings) if get_item != ds.get_item else None
    elements = ds._dict
    for tag in sorted(elements):
        if (tag & 0xFFFF == 0 and tag >> 16 > 6) or tag == skip:  # retired group lengths are not written
            continue
        raw = elements[tag]
        key = _memo_key(raw, context)
        if key is not None:
            known = _MEMO.get(key)
            if known is not None:  # this raw element converted and written before: the same bytes again
                parts += known
                continue
            encoded: list[bytes] = []
            _write_element(encoded, get_item(tag), implicit, encodings, converted)
            _remember(key, encoded)
            parts += encoded
            continue
        _write_element(parts, get_item(tag), implicit, encodings, converted)


# Untouched raw elements of the engine's output are converted to values and written again by
# pydicom's rules (the output's encoding is "new"). The bytes that gives depend only on the raw
# element (tag, VR, value bytes, encoding), the character sets, the target encoding and
# pydicom's configuration and hooks, so they are remembered per process: the same Modality,
# Pixel Spacing or Bits Stored of the next instance costs a dictionary lookup. Only short,
# public, explicit-VR values of a plain VR; nothing of a sequence, private or UN element.
_MEMO: dict[tuple, tuple[bytes, ...]] = {}
_MEMO_ENTRIES = 8192
_MEMO_MAX_VALUE = 256
_MEMO_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
                       "ST", "TM", "UC", "UI", "UL", "UR", "US", "UT"})


def _memo_context(ds: Dataset, implicit: bool, encodings) -> tuple | None:
    """Everything besides the raw element that converting and writing it depends on, or None
    when pydicom's conversion has been customised (then nothing is remembered)."""
    from pydicom import config
    from pydicom.hooks import hooks, raw_element_value, raw_element_vr

    if (config.data_element_callback or hooks.raw_element_kwargs or hooks.raw_element_vr is not raw_element_vr
            or hooks.raw_element_value is not raw_element_value):
        return None
    charset = ds.original_character_set or ds._character_set
    return (implicit, _hashable(charset), _hashable(encodings), config.settings.reading_validation_mode,
            config.settings.writing_validation_mode, config.use_DS_numpy, config.use_IS_numpy, config.use_DS_decimal,
            config.datetime_conversion, config.convert_wrong_length_to_UN, config.replace_un_with_known_vr)


def _hashable(value):
    if isinstance(value, str) or value is None:
        return value
    return tuple(str(v) for v in value)


def _memo_key(raw, context: tuple | None) -> tuple | None:
    if context is None or type(raw) is not RawDataElement or raw.is_implicit_VR or not raw.is_little_endian:
        return None
    value = raw.value
    if raw.VR not in _MEMO_VRS or value is None or len(value) > _MEMO_MAX_VALUE or raw.tag >> 16 & 1 \
            or raw.length != len(value) or raw.tag == 0x00080005:
        return None
    return (int(raw.tag), raw.VR, value, context)


def _remember(key: tuple, encoded: list[bytes]) -> None:
    if len(_MEMO) >= _MEMO_ENTRIES:
        _MEMO.clear()
    _MEMO[key] = tuple(encoded)


def _write_element(parts: list[bytes], elem: DataElement | RawDataElement, implicit: bool, encodings,
                   converted: _Encodings) -> None:
    """pydicom's write_data_element, little endian."""
    vr = elem.VR
    if not implicit and vr and len(vr) != 2:
        raise _Unsupported("ambiguous VR")
    if isinstance(elem, RawDataElement):
        value = elem.value
        if value is None:
            raise _Unsupported("raw element without a value")
        undefined = elem.length == _UNDEFINED
    else:
        if vr not in writers:
            raise _Unsupported("unknown VR")
        if elem.is_buffered:
            raise _Unsupported("buffered value")
        charsets = converted.converted()
        undefined = elem.is_undefined_length
        value = b""
        if elem.is_empty:
            pass
        elif vr == VR.SQ:
            value = _sequence_value(elem, implicit, charsets)
        else:
            value = _plain_value(vr, elem.value)
        if value is None:
            fn, param = writers[vr]
            buffer = DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = True, implicit
            if vr in CUSTOMIZABLE_CHARSET_VR:
                fn(buffer, elem, encodings=charsets)
            elif param is not None:
                fn(buffer, elem, param)
            else:
                fn(buffer, elem)
            value = buffer.getvalue()
    tag = elem.tag
    if undefined and tag == 0x7FE00010:  # as pydicom checks it: the element's own value
        head = elem.value
        if not isinstance(head, bytes) or not head[:4].startswith(_ITEM):
            raise _Unsupported("pixel data not encapsulated")
    length = len(value)
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        parts.append(_IMPLICIT_HEADER.pack(group, element, _UNDEFINED if undefined else length))
    elif vr in EXPLICIT_VR_LENGTH_32:
        parts.append(_LONG_HEADER.pack(group, element, vr.encode(), _UNDEFINED if undefined else length))
    elif undefined or length > 0xFFFF:
        raise _Unsupported("a 2-byte length field that cannot hold the length: pydicom writes UN")
    else:
        parts.append(_SHORT_HEADER.pack(group, element, vr.encode(), length))
    parts.append(value)
    if undefined:
        parts.append(_SEQUENCE_DELIMITER)


_STRING_PADDING = {VR.AE: " ", VR.AS: " ", VR.CS: " ", VR.UR: " ", VR.DA: " ", VR.DT: " ", VR.TM: " ", VR.UI: "\0"}
_INTEGERS = {VR.US: Struct("<H"), VR.UL: Struct("<L"), VR.SS: Struct("<h"), VR.SL: Struct("<l")}
_PADDED_BYTES = frozenset({VR.OB, VR.OD, VR.OF, VR.OL, VR.OV, VR.OW})


def _plain_value(vr: str, value) -> bytes | None:
    """The bytes pydicom's writer gives for the commonest plain values (one str of an ASCII VR,
    one int, bytes, one IS/DS), line for line as pydicom computes them; None for anything else,
    which pydicom's writer then encodes."""
    kind = type(value)
    if kind is str or (kind is UID and vr == VR.UI):
        padding = _STRING_PADDING.get(vr)
        if padding is None:
            return None
        if len(value) % 2 != 0:  # write_string
            value += padding
        return value.encode(default_encoding)
    if kind is int:
        integer = _INTEGERS.get(vr)
        return integer.pack(value) if integer is not None else None  # write_numbers, one value
    if kind is bytes:
        if vr in _PADDED_BYTES:  # write_OBvalue / write_OWvalue
            return value + b"\x00" if len(value) % 2 else value
        return value if vr == VR.UN else None  # write_UN
    if kind is IS or kind is DSfloat or kind is DSdecimal:
        if vr not in (VR.IS, VR.DS):
            return None
        text = value.original_string if hasattr(value, "original_string") else str(value)  # write_number_string
        if len(text) % 2 != 0:
            text = text + " "
        return bytes(text, default_encoding)
    return None


def _sequence_value(elem: DataElement, implicit: bool, encodings: list[str]) -> bytes:
    """pydicom's write_sequence / write_sequence_item."""
    items: list[bytes] = []
    for item in elem.value:
        body: list[bytes] = []
        _write_dataset(body, item, implicit, encodings)
        content = b"".join(body)
        if getattr(item, "is_undefined_length_sequence_item", False):
            items += [_ITEM, _UL.pack(_UNDEFINED), content, _ITEM_DELIMITER]
        else:
            items += [_ITEM, _UL.pack(len(content)), content]
    return b"".join(items)
