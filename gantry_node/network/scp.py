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
"""

from __future__ import annotations

import ipaddress

from pydicom._uid_dict import UID_dictionary
from pynetdicom import AE, AllStoragePresentationContexts, evt, register_uid
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import Verification, uid_to_service_class
from pynetdicom.transport import ThreadedAssociationServer

from gantry_node.audit import Audit
from gantry_node.config import NodeSettings
from gantry_node.inbox import Inbox
from gantry_node.network.part10 import file_meta
from gantry_node.network.tcp import nodelay_handlers
from gantry_node.store import Store, StoreError

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700

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


def handle_store(event: evt.Event, inbox: Inbox, store: Store, audit: Audit) -> int:
    """EVT_C_STORE: persist, index, then answer."""
    request = event.request
    source_uid = str(request.AffectedSOPInstanceUID or "").strip()
    sop_class = str(request.AffectedSOPClassUID or "")
    calling = event.assoc.requestor.ae_title.strip()
    peer = event.assoc.requestor.address
    try:
        held = store.known(source_uid)
        if held is not None and held["state"] not in ("forwarded", "purged"):
            audit.event("duplicate", instance=held["id"], calling_ae=calling, state=held["state"])
            return SUCCESS
        transfer_syntax = str(event.context.transfer_syntax)
        path = inbox.put(file_meta(sop_class, source_uid, transfer_syntax, calling), request.DataSet.getbuffer())
    except (OSError, StoreError) as exc:
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(exc))
        return OUT_OF_RESOURCES
    try:
        instance_id, outcome, replaced = store.add_received(source_uid, sop_class, transfer_syntax, str(path),
                                                            calling, peer)
    except StoreError as exc:
        inbox.discard(path)
        audit.event("store_failed", level="error", calling_ae=calling, peer=peer, reason=_why(exc))
        return OUT_OF_RESOURCES
    if outcome == "duplicate":
        inbox.discard(path)
        audit.event("duplicate", instance=instance_id, calling_ae=calling)
        return SUCCESS
    if replaced and replaced != str(path):
        inbox.discard(replaced)
    audit.event("received", instance=instance_id, calling_ae=calling, peer=peer, outcome=outcome)
    return SUCCESS


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"cannot write the inbox: {exc.strerror or type(exc).__name__}"
    return f"cannot record the instance: {type(exc).__name__}"


def handle_echo(event: evt.Event) -> int:
    return SUCCESS


def handle_requested(event: evt.Event, settings: NodeSettings, audit: Audit) -> None:
    """EVT_REQUESTED: enforce the calling AE title and source address allow-lists."""
    rq = event.assoc.requestor
    calling = rq.primitive.calling_ae_title.strip() if rq.primitive else ""
    peer = rq.address
    reason = None
    if settings.allowed_calling_aets and calling not in settings.allowed_calling_aets:
        reason, diagnostic = "calling AE title not allowed", 0x03
    elif settings.allowed_addresses and not _address_allowed(peer, settings.allowed_addresses):
        reason, diagnostic = "source address not allowed", 0x01
    if reason:
        audit.event("association_rejected", level="warning", calling_ae=calling, peer=peer, reason=reason)
        event.assoc.acse.send_reject(0x01, 0x01, diagnostic)
        # as pynetdicom's own rejections do: wait until the A-ASSOCIATE-RJ is out before the
        # connection is shut, or the peer may only see the connection drop
        event.assoc.kill()


def handle_accepted(event: evt.Event, audit: Audit) -> None:
    rq = event.assoc.requestor
    audit.event("association_accepted", calling_ae=rq.ae_title.strip(), peer=rq.address)


def _address_allowed(peer: str, allowed: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(a, strict=False) for a in allowed)


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
    ae.maximum_associations = settings.max_associations
    ae.network_timeout = settings.network_timeout
    ae.dimse_timeout = settings.network_timeout
    ae.acse_timeout = settings.network_timeout
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, TRANSFER_SYNTAXES)
    for uid in retired_storage_classes():
        ae.add_supported_context(uid, TRANSFER_SYNTAXES)
    return ae


def handle_store_audited(event: evt.Event, inbox: Inbox, store: Store, audit: Audit) -> int:
    """EVT_C_STORE: `handle_store`, and 0xA700 if it raised. What raises there is an audit sink
    that cannot write (audit.log on a full disk): no Success without its audit line, and the
    sender keeps the instance and sends it again (pynetdicom's own answer would be 0xC211, a
    failure senders need not retry). The instance may already be recorded: the resend is then
    a duplicate, answered Success with its own audit line."""
    try:
        return handle_store(event, inbox, store, audit)
    except Exception:  # noqa: BLE001 -- answer, never let pynetdicom pick the status
        return OUT_OF_RESOURCES


def start_scp(settings: NodeSettings, inbox: Inbox, store: Store, audit: Audit) -> ThreadedAssociationServer:
    """Start listening in background threads; returns the server (call .shutdown() to stop)."""
    ae = build_ae(settings)
    handlers = [
        (evt.EVT_C_STORE, handle_store_audited, [inbox, store, audit]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_REQUESTED, handle_requested, [settings, audit]),
        (evt.EVT_ACCEPTED, handle_accepted, [audit]),
        *nodelay_handlers(settings.tcp_nodelay),
    ]
    server = ae.start_server((settings.bind, settings.port), block=False, evt_handlers=handlers)
    return server
