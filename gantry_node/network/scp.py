"""The C-ECHO / C-STORE SCP: every storage SOP class (the retired ones too), the common
transfer syntaxes as sent.

`handle_store` answers Success only after the instance is in the inbox (fsynced and renamed)
and its row is committed; if either fails the answer is 0xA700 (Out of Resources) and the
sender keeps the instance and retries. Nothing is decoded here: a bad instance is stored
and quarantined by the worker, so the SCP stays fast and never blocks on processing.

pynetdicom's chunked receive (_config.STORE_RECV_CHUNKED_DATASET) is not used: it writes the
incoming dataset to a temporary file itself, before the handler runs, and a full disk there
aborts the association instead of letting us answer 0xA700. The encoded bytes are kept in
memory for one instance per association (max_associations bounds it) and written by us, after
a File Meta header of our own (`part10.file_meta`), straight from pynetdicom's buffer.

An instance is known by the request's Affected SOP Instance UID, which must be the data set's
own (else 0xA900, nothing stored). A re-sent UID is told apart by a SHA-256 of the data set
as received: the same content is a duplicate (Success, nothing new); other content is a
correction (`Store.add_received`: replaces a held copy, or is forwarded again).

Who may connect, and for how long, is the Gate's (network/gate.py); TLS too.
"""

from __future__ import annotations

import hashlib
import threading

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt, register_uid
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification, uid_to_service_class

from gantry_node.audit import Audit
from gantry_node.config import NodeSettings
from gantry_node.inbox import Inbox
from gantry_node.network.gate import NO_LIMIT, Gate, GatedServer, handle_acse_recv, normalize_address
from gantry_node.network.identity import dataset_sop_instance_uid
from gantry_node.network.part10 import file_meta
from gantry_node.network.tcp import nodelay_handlers
from gantry_node.network.tls import server_context
from gantry_node.store import Store, StoreError

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


def handle_store(event: evt.Event, inbox: Inbox, store: Store, audit: Audit) -> int | Dataset:
    """EVT_C_STORE: check, persist, index, then answer."""
    request = event.request
    source_uid = str(request.AffectedSOPInstanceUID or "").strip()
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title.strip()
    peer = normalize_address(event.assoc.requestor.address)
    transfer_syntax = str(event.context.transfer_syntax)
    data = request.DataSet
    own_uid = dataset_sop_instance_uid(data, transfer_syntax)
    if own_uid != source_uid:
        reason = ("data set has no readable SOP Instance UID" if own_uid is None
                  else "data set SOP Instance UID is not the Affected SOP Instance UID")
        audit.event("store_refused", level="warning", calling_ae=calling, peer=peer,
                    status=f"0x{UID_MISMATCH:04X}", reason=reason)
        return _failure(UID_MISMATCH, reason)
    digest = hashlib.sha256(data.getbuffer()).hexdigest()
    try:
        held = store.known(source_uid)
        if held is not None and held["content_digest"] == digest:
            audit.event("duplicate", instance=held["id"], calling_ae=calling, state=held["state"])
            return SUCCESS
        path = inbox.put(file_meta(sop_class, source_uid, transfer_syntax, calling), data.getbuffer())
    except (OSError, StoreError) as exc:
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(exc))
        return OUT_OF_RESOURCES
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


def _failure(status: int, comment: str) -> Dataset:
    """A failure status with an Error Comment (64 characters at most, no value from the data
    set) and the offending element, as PS3.7 C.4.2 lets a C-STORE response carry."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    ds.OffendingElement = [0x00080018]
    return ds


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot write the inbox: {exc.strerror or type(exc).__name__}"
    return f"cannot record the instance: {type(exc).__name__}"


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


def handle_requested(event: evt.Event, gate: Gate) -> None:
    """EVT_REQUESTED: the calling AE allow-list and the association limits (the Gate)."""
    assoc = event.assoc
    primitive = assoc.requestor.primitive
    calling = primitive.calling_ae_title.strip() if primitive else ""
    refusal = gate.request(assoc.gantry_connection, calling)
    if refusal:
        assoc.acse.send_reject(*refusal[1])
        # as pynetdicom's own rejections do: wait until the A-ASSOCIATE-RJ is out before the
        # connection is shut, or the peer may only see the connection drop
        assoc.kill()


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


def start_scp(settings: NodeSettings, inbox: Inbox, store: Store, audit: Audit) -> Scp:
    """Start listening in background threads; returns the listeners (call .shutdown() to stop)."""
    ae = build_ae(settings)
    gate = Gate(settings, audit)
    handlers = [
        (evt.EVT_C_STORE, handle_store_audited, [inbox, store, audit]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_REQUESTED, handle_requested, [gate]),
        (evt.EVT_ACCEPTED, handle_accepted, [audit]),
        (evt.EVT_ACSE_RECV, handle_acse_recv),
        *nodelay_handlers(settings.tcp_nodelay),
    ]
    servers: list[GatedServer] = []
    try:
        for port, tls in listeners(settings):
            context = server_context(settings.tls) if tls and settings.tls is not None else None
            server = ae.make_server((settings.bind, port), evt_handlers=handlers, server_class=GatedServer,
                                    gate=gate, tls=context)
            servers.append(server)
            threading.Thread(target=server.serve_forever, name=f"gantry-scp-{port}", daemon=True).start()
    except BaseException:
        for server in servers:
            server.shutdown()
        raise
    return Scp(servers, gate)
