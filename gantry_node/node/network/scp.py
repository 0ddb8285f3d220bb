"""The C-ECHO / C-STORE SCP: every storage SOP class (the retired ones too), the common
transfer syntaxes as sent.

`handle_store` answers Success only after the instance is in the inbox (fsynced and renamed)
and its row is committed; if either fails the answer is 0xA700 (Out of Resources) and the
sender keeps the instance and retries. Nothing is decoded here: a bad instance is stored
and quarantined by the worker, so the SCP stays fast and never blocks on processing.

The data set is streamed to its inbox file as its P-DATA arrives (`DataSetSink`, installed in
each association's DIMSE provider when the association is requested): pynetdicom never holds
it in memory, and the receiver's memory does not grow with the instance (a buffer of at most
SINK_BUFFER bytes per association). The file starts with a File Meta header of our own
(`part10.file_meta`). pynetdicom's chunked receive (_config.STORE_RECV_CHUNKED_DATASET) is not
used: it writes to a temporary file of its own, and a full disk there aborts the association
instead of letting us answer 0xA700. Here a write that fails (ENOSPC) is remembered, the rest of
the data set is read and dropped, and the answer is 0xA700; a data set larger than
node.max_instance_size stops being written (its file removed) the moment its bytes pass the
limit, and is refused with 0xA700 once its last fragment is in (DIMSE has no earlier answer).
A file whose association ends before the handler took it is removed.

An instance is known by the request's Affected SOP Instance UID, which must be the data set's
own (read from the head of the file; else 0xA900, nothing stored). A re-sent UID is told apart
by a SHA-256 of the data set as received (computed as it is written): the same content is a
duplicate (Success, nothing new); other content is a correction (`Store.add_received`: replaces
a held copy, or is forwarded again). Only what is kept is fsynced.

Who may connect, and for how long, is the Gate's (network/gate.py); TLS too.
"""

from __future__ import annotations

import hashlib
import io
import threading

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt, register_uid
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification, uid_to_service_class

from gantry_node.io.file_meta import file_meta
from gantry_node.node.audit_log import Audit
from gantry_node.node.config import NodeSettings
from gantry_node.node.network.gate import (
    NO_LIMIT,
    Gate,
    GatedServer,
    SharedSlots,
    handle_acse_recv,
    normalize_address,
)
from gantry_node.node.network.identity import PREFIX, dataset_sop_instance_uid
from gantry_node.node.network.tcp import nodelay_handlers
from gantry_node.node.network.tls import server_context
from gantry_node.node.store import Store, StoreError
from gantry_node.node.store.inbox import Inbox, Incoming

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
# PS3.4 B.2.3: "Error: Data Set does not match SOP Class" (A900-A9FF); the data set does not
# identify itself as the instance the C-STORE request names
UID_MISMATCH = 0xA900

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
]


SINK_BUFFER = 1024 * 1024  # bytes collected before a write: one write for an ordinary CT slice


class DataSetSink(io.BytesIO):
    """The Data Set of one DIMSE message as pynetdicom receives it (it must be a BytesIO).

    For a C-STORE-RQ each fragment goes to an inbox file (`Inbox.create`), behind our File
    Meta header, through a buffer of SINK_BUFFER bytes; the SHA-256 of the data set and the
    first PREFIX bytes (for its SOP Instance UID) are kept as it passes. Nothing here raises
    into pynetdicom's reader thread: a failed write or a data set over `limit` is noted, the
    file removed and the rest of the data set counted and dropped; the C-STORE handler
    answers. Any other message's data set stays in memory, as pynetdicom keeps it."""

    def __init__(self, message: DIMSEMessage, assoc, inbox: Inbox, limit: int):
        super().__init__()
        self._message, self._assoc, self._inbox, self.limit = message, assoc, inbox, limit
        self.size = 0  # bytes of the data set received so far
        self.head = b""
        self.digest = hashlib.sha256()
        self.file: Incoming | None = None
        self.meta_length = 0
        self.error: Exception | None = None
        self.too_large = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._lock = threading.Lock()
        self._claimed = self._abandoned = False

    @property
    def streaming(self) -> bool:
        return isinstance(self._message, C_STORE_RQ)

    def write(self, data) -> int:  # type: ignore[override]
        if not self.streaming:
            return super().write(data)
        n = len(data)
        self.size += n
        if self.too_large or self.error is not None:
            return n
        if self.size > self.limit:
            self.too_large = True
            self._drop()
            return n
        if len(self.head) < PREFIX:
            self.head += bytes(data[:PREFIX - len(self.head)])
        self._pending.append(data)
        self._pending_size += n
        if self._pending_size >= SINK_BUFFER:
            self._flush()
        return n

    def _flush(self) -> None:
        chunks, self._pending, self._pending_size = self._pending, [], 0
        try:
            if self.file is None:
                meta = self._meta()
                self.file = self._inbox.create()
                self.meta_length = len(meta)
                chunks = [meta, *chunks]
                for chunk in chunks[1:]:
                    self.digest.update(chunk)
            else:
                for chunk in chunks:
                    self.digest.update(chunk)
            self.file.write(*chunks)
        except Exception as exc:  # noqa: BLE001 -- never into pynetdicom's reader: the handler answers
            self.error = exc
            self._drop()

    def _meta(self) -> bytes:
        command = self._message.command_set
        context = self._assoc._accepted_cx[self._message.context_id]
        return file_meta(str(command.AffectedSOPClassUID or ""), str(command.AffectedSOPInstanceUID or "").strip(),
                         str(context.transfer_syntax[0]), self._assoc.requestor.ae_title.strip())

    def _drop(self) -> None:
        self._pending, self._pending_size = [], 0
        if self.file is not None:
            self.file.discard()
            self.file = None

    def claim(self) -> bool:
        """The C-STORE handler takes the file over (False: its association already ended)."""
        with self._lock:
            if self._abandoned:
                return False
            self._claimed = True
        if self.error is None and not self.too_large:
            self._flush()
        return True

    def abandon(self) -> None:
        """The association ended: remove the file unless a handler has it."""
        with self._lock:
            if self._claimed:
                return
            self._abandoned = True
        self._drop()


def install_sinks(assoc, inbox: Inbox, limit: int) -> None:
    """Have this association's DIMSE provider give each new message a DataSetSink. Called
    when the association is requested, before any P-DATA can arrive."""
    dimse = assoc.dimse
    receive = dimse.receive_primitive
    sinks: list[DataSetSink] = []
    assoc.gantry_sinks = sinks

    def receive_primitive(primitive) -> None:
        if dimse.message is None:
            dimse.message = DIMSEMessage()
            sinks[:] = [s for s in sinks if not s._claimed]
            sink = DataSetSink(dimse.message, assoc, inbox, limit)
            sinks.append(sink)
            dimse.message.data_set = sink
        receive(primitive)

    dimse.receive_primitive = receive_primitive


def handle_ended(event: evt.Event) -> None:
    """EVT_CONN_CLOSE / EVT_ABORTED: files of data sets no handler took are removed."""
    for sink in list(getattr(event.assoc, "gantry_sinks", ())):
        sink.abandon()


def handle_store(event: evt.Event, inbox: Inbox, store: Store, audit: Audit) -> int | Dataset:
    """EVT_C_STORE: check, persist, index, then answer."""
    request = event.request
    sink = request.DataSet
    if not isinstance(sink, DataSetSink):  # an association the sinks were not installed in
        raise TypeError("the data set was not streamed to the inbox")
    if not sink.claim():
        return OUT_OF_RESOURCES
    try:
        return _store(event, sink, inbox, store, audit)
    finally:
        sink._drop()  # what was kept is committed and no longer the sink's


def _store(event: evt.Event, sink: DataSetSink, inbox: Inbox, store: Store, audit: Audit) -> int | Dataset:
    request = event.request
    source_uid = str(request.AffectedSOPInstanceUID or "").strip()
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title.strip()
    peer = normalize_address(event.assoc.requestor.address)
    transfer_syntax = str(event.context.transfer_syntax)
    if sink.too_large:
        reason = "instance larger than node.max_instance_size"
        audit.event("store_refused", level="warning", calling_ae=calling, peer=peer,
                    status=f"0x{OUT_OF_RESOURCES:04X}", reason=reason)
        return _failure(OUT_OF_RESOURCES, reason, offending=False)
    if sink.error is not None:
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(sink.error))
        return OUT_OF_RESOURCES
    own_uid = _own_uid(sink, transfer_syntax)
    if own_uid != source_uid:
        reason = ("data set has no readable SOP Instance UID" if own_uid is None
                  else "data set SOP Instance UID is not the Affected SOP Instance UID")
        audit.event("store_refused", level="warning", calling_ae=calling, peer=peer,
                    status=f"0x{UID_MISMATCH:04X}", reason=reason)
        return _failure(UID_MISMATCH, reason)
    digest = sink.digest.hexdigest()
    incoming = sink.file
    assert incoming is not None  # written by claim(): meta and data set
    try:
        held = store.known(source_uid)
        if held is not None and held["content_digest"] == digest:
            audit.event("duplicate", instance=held["id"], calling_ae=calling, state=held["state"])
            return SUCCESS
        path = incoming.commit()
    except (OSError, StoreError) as exc:
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(exc))
        return OUT_OF_RESOURCES
    sink.file = None  # committed: from here the row decides
    try:
        instance_id, outcome, replaced, previous = store.add_received(
            source_uid, sop_class, transfer_syntax, str(path), calling, peer, digest)
    except StoreError as exc:
        inbox.discard(path)
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(exc))
        return OUT_OF_RESOURCES
    if outcome == "duplicate":
        inbox.discard(path)
        audit.event("duplicate", instance=instance_id, calling_ae=calling, state=previous)
        return SUCCESS
    if replaced and replaced != str(path):
        inbox.discard(replaced)
    audit.event("received", instance=instance_id, calling_ae=calling, peer=peer, outcome=outcome,
                **({"state": previous} if previous else {}))
    return SUCCESS


def _own_uid(sink: DataSetSink, transfer_syntax: str) -> str | None:
    """The data set's SOP Instance UID: from the head kept in memory, else from the file."""
    uid = dataset_sop_instance_uid(io.BytesIO(sink.head), transfer_syntax)
    if uid is None and sink.size > len(sink.head) and sink.file is not None:
        with open(sink.file.path, "rb") as f:
            f.seek(sink.meta_length)
            uid = dataset_sop_instance_uid(f, transfer_syntax)
    return uid


def _failure(status: int, comment: str, offending: bool = True) -> Dataset:
    """A failure status with an Error Comment (64 characters at most, no value from the data
    set) and the offending element, as PS3.7 C.4.2 lets a C-STORE response carry."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    if offending:
        ds.OffendingElement = [0x00080018]
    return ds


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot write the inbox: {exc.strerror or type(exc).__name__}"
    return f"cannot record the instance: {type(exc).__name__}"


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


def handle_requested(event: evt.Event, gate: Gate, inbox: Inbox, max_instance_size: int) -> None:
    """EVT_REQUESTED: the calling AE allow-list and the association limits (the Gate); an
    association that may go on streams its data sets to the inbox (`install_sinks`)."""
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    calling = primitive.calling_ae_title.strip() if primitive else ""
    refusal = gate.request(assoc.gantry_connection, calling)
    if refusal:
        assoc.acse.send_reject(*refusal[1])
        # as pynetdicom's own rejections do: wait until the A-ASSOCIATE-RJ is out before the
        # connection is shut, or the peer may only see the connection drop
        assoc.kill()
        return
    install_sinks(assoc, inbox, max_instance_size)


def handle_accepted(event: evt.Event, audit: Audit) -> None:
    rq = event.assoc.requestor
    audit.event("association_accepted", calling_ae=rq.ae_title.strip(), peer=normalize_address(rq.address))


def retired_storage_classes() -> list[str]:
    """Retired storage SOP classes (pydicom's UID dictionary) that pynetdicom leaves out.

    Old modalities still send them, and so does a PACS forwarding its archive: a 1990s
    ultrasound as Ultrasound Image Storage (Retired), NM, VL and SR trial classes. Each is
    registered with pynetdicom's storage service; without that, pynetdicom aborts the whole
    association when a C-STORE for one arrives.
    """
    current = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
    retired = []
    for uid, (_name, kind, _info, status, keyword) in UID_dictionary.items():
        if (uid.startswith("1.2.840.10008.5.1.4.1.1.") and kind == "SOP Class" and status == "Retired"
                and keyword and uid not in current):
            if uid_to_service_class(uid) is not StorageServiceClass:
                register_uid(uid, keyword, StorageServiceClass)
            retired.append(uid)
    return sorted(retired)


def build_ae(settings: NodeSettings) -> AE:
    ae = AE(ae_title=settings.ae_title)
    ae.maximum_pdu_size = settings.max_pdu
    ae.maximum_associations = NO_LIMIT  # the Gate counts associations, not connections
    ae.network_timeout = settings.network_timeout
    ae.dimse_timeout = settings.network_timeout
    ae.acse_timeout = settings.artim_timeout  # how long an acceptor waits for the A-ASSOCIATE-RQ
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    for uid in retired_storage_classes():
        ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    return ae


class Scp:
    """The node's listeners (plain, TLS, or both), sharing one Gate."""

    def __init__(self, servers: list[GatedServer], gate: Gate):
        self.servers = servers
        self.gate = gate

    def shutdown(self) -> None:
        """No new connections; associations in progress go on in their threads."""
        for server in self.servers:
            server.shutdown()

    def busy(self) -> bool:
        """Some association is established (bare connections do not count)."""
        return self.gate.associations() > 0


def listeners(settings: NodeSettings) -> list[tuple[int, bool]]:
    """(port, TLS) of each listener: node.port plain; with node.tls, node.port TLS only, or
    node.tls.port TLS beside the plain node.port."""
    if settings.tls is None:
        return [(settings.port, False)]
    if settings.tls.port is None:
        return [(settings.port, True)]
    return [(settings.port, False), (settings.tls.port, True)]


def handle_store_audited(event: evt.Event, inbox: Inbox, store: Store, audit: Audit) -> int | Dataset:
    """EVT_C_STORE: `handle_store`, and 0xA700 if it raised. What raises there is an audit sink
    that cannot write (audit.log on a full disk): no Success without its audit line, and the
    sender keeps the instance and sends it again (pynetdicom's own answer would be 0xC211, a
    failure senders need not retry). The instance may already be recorded: the resend is then
    a duplicate, answered Success with its own audit line."""
    try:
        return handle_store(event, inbox, store, audit)
    except Exception:  # noqa: BLE001 -- answer, never let pynetdicom pick the status
        return OUT_OF_RESOURCES


def start_scp(settings: NodeSettings, inbox: Inbox, store: Store, audit: Audit, reuse_port: bool = False,
              shared: SharedSlots | None = None) -> Scp:
    """Start listening in background threads; returns the listeners (call .shutdown() to stop).
    With `reuse_port` other receivers may listen on the same ports; `shared` is where their
    Gates count together."""
    ae = build_ae(settings)
    gate = Gate(settings, audit, shared)
    handlers = [
        (evt.EVT_C_STORE, handle_store_audited, [inbox, store, audit]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_REQUESTED, handle_requested, [gate, inbox, settings.max_instance_size]),
        (evt.EVT_CONN_CLOSE, handle_ended),
        (evt.EVT_ABORTED, handle_ended),
        (evt.EVT_ACCEPTED, handle_accepted, [audit]),
        (evt.EVT_ACSE_RECV, handle_acse_recv),
        *nodelay_handlers(settings.tcp_nodelay),
    ]
    servers: list[GatedServer] = []
    try:
        for port, tls in listeners(settings):
            context = server_context(settings.tls) if tls and settings.tls is not None else None
            server = ae.make_server((settings.bind, port), evt_handlers=handlers, server_class=GatedServer,
                                    gate=gate, tls=context, reuse_port=reuse_port)
            servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"gantry-scp-{port}", daemon=True).start()
    except BaseException:
        for server in servers:
            server.shutdown()
        raise
    return Scp(servers, gate)
