//! foca plumbing: the codec that bounds the member table to [`MEMBERS_MAX`], the
//! metadata broadcasts (wire format, dissemination key, handler) and the tables both
//! share with the core.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut};
use foca::{BroadcastHandler, Codec, Header, Invalidates, PostcardCodec};
use serde::{Deserialize, Serialize};

use super::{MEMBERS_MAX, META_BYTES_MAX, META_FORMAT_V1, MembershipError, NodeMeta, SwimId, lock};

/// State shared by the core with the codec and the broadcast handler that foca owns
/// (foca offers no accessor to them). Only the driver task touches it.
#[derive(Debug)]
pub(super) struct GossipTables {
    pub(super) own_addr: SocketAddr,
    /// The core's clock at the current foca call.
    pub(super) now_ms: u64,
    /// Latest metadata per address (others only).
    pub(super) metas: BTreeMap<SocketAddr, MetaEntry>,
    /// Set when `metas` changed; cleared by the core.
    pub(super) metas_changed: bool,
    /// Addresses foca may track (a superset, resynchronised by the core). Bounds foca's
    /// member table to [`MEMBERS_MAX`].
    pub(super) known_addrs: BTreeSet<SocketAddr>,
    /// While set, custom broadcasts ride only on messages to this address (a directed
    /// push through `Foca::broadcast`).
    pub(super) broadcast_target: Option<SocketAddr>,
    /// Highest `bump` seen in packets for an identity with our address (0: none). Above
    /// our own, it is a previous life the cluster still tracks (our clock went back).
    pub(super) own_bump_seen: u64,
}

#[derive(Debug, Clone)]
pub(super) struct MetaEntry {
    bump: u64,
    seq: u64,
    pub(super) meta: NodeMeta,
    pub(super) received_ms: u64,
}

pub(super) type SharedTables = Arc<Mutex<GossipTables>>;

#[derive(Debug, thiserror::Error)]
pub(super) enum GossipCodecError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("member table full ({MEMBERS_MAX} addresses); refusing new member {0}")]
    MembersFull(SocketAddr),
}

/// foca's postcard codec, refusing packets that would grow the member table past
/// [`MEMBERS_MAX`].
pub(super) struct BoundedCodec {
    pub(super) tables: SharedTables,
}

impl BoundedCodec {
    fn note_own(&self, id: &SwimId) {
        let mut tables = lock(&self.tables);
        if id.addr == tables.own_addr && id.bump > tables.own_bump_seen {
            tables.own_bump_seen = id.bump;
        }
    }

    fn admit(&self, addr: SocketAddr) -> Result<(), GossipCodecError> {
        let mut tables = lock(&self.tables);
        if addr == tables.own_addr || tables.known_addrs.contains(&addr) {
            return Ok(());
        }
        if tables.known_addrs.len() >= MEMBERS_MAX {
            return Err(GossipCodecError::MembersFull(addr));
        }
        tables.known_addrs.insert(addr);
        Ok(())
    }
}

impl Codec<SwimId> for BoundedCodec {
    type Error = GossipCodecError;

    fn encode_header(
        &mut self,
        header: &Header<SwimId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Ok(PostcardCodec.encode_header(header, buf)?)
    }

    fn decode_header(&mut self, buf: impl Buf) -> Result<Header<SwimId>, Self::Error> {
        let header: Header<SwimId> = PostcardCodec.decode_header(buf)?;
        self.note_own(&header.src);
        self.note_own(&header.dst);
        self.admit(header.src.addr)?;
        Ok(header)
    }

    fn encode_member(
        &mut self,
        member: &foca::Member<SwimId>,
        buf: impl BufMut,
    ) -> Result<(), Self::Error> {
        Ok(PostcardCodec.encode_member(member, buf)?)
    }

    fn decode_member(&mut self, buf: impl Buf) -> Result<foca::Member<SwimId>, Self::Error> {
        let member: foca::Member<SwimId> = PostcardCodec.decode_member(buf)?;
        self.note_own(member.id());
        self.admit(member.id().addr)?;
        Ok(member)
    }
}

/// The metadata broadcast on the wire (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MetaWire {
    pub(super) format: u8,
    pub(super) bump: u64,
    pub(super) seq: u64,
    pub(super) meta: NodeMeta,
}

impl MetaWire {
    pub(super) fn encode(&self) -> Result<Vec<u8>, MembershipError> {
        let bytes = postcard::to_allocvec(self).map_err(|_| MembershipError::MetaTooLarge {
            len_bytes: usize::MAX,
            max_bytes: META_BYTES_MAX,
        })?;
        if bytes.len() > META_BYTES_MAX {
            return Err(MembershipError::MetaTooLarge {
                len_bytes: bytes.len(),
                max_bytes: META_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    fn decode(data: &[u8]) -> Result<MetaWire, MetaBroadcastError> {
        if data.len() > META_BYTES_MAX {
            return Err(MetaBroadcastError::TooLarge(data.len()));
        }
        let (wire, rest): (MetaWire, &[u8]) = postcard::take_from_bytes(data)?;
        if !rest.is_empty() {
            return Err(MetaBroadcastError::TrailingBytes(rest.len()));
        }
        if wire.format != META_FORMAT_V1 {
            return Err(MetaBroadcastError::UnknownFormat(wire.format));
        }
        Ok(wire)
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum MetaBroadcastError {
    #[error("metadata broadcast of {0} bytes exceeds {META_BYTES_MAX}")]
    TooLarge(usize),
    #[error("metadata broadcast undecodable: {0}")]
    Decode(#[from] postcard::Error),
    #[error("metadata broadcast has {0} trailing bytes")]
    TrailingBytes(usize),
    #[error("metadata broadcast has unknown format {0}")]
    UnknownFormat(u8),
}

/// Dissemination key of a metadata broadcast: newer `(bump, seq)` for the same address
/// replaces older ones still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MetaKey {
    addr: SocketAddr,
    bump: u64,
    seq: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && (self.bump, self.seq) >= (other.bump, other.seq)
    }
}

pub(super) struct MetaHandler {
    pub(super) tables: SharedTables,
}

impl BroadcastHandler<SwimId> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaBroadcastError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&SwimId>,
    ) -> Result<Option<MetaKey>, MetaBroadcastError> {
        let wire = MetaWire::decode(data)?;
        let key = MetaKey {
            addr: wire.meta.addr,
            bump: wire.bump,
            seq: wire.seq,
        };
        if sender.is_none() {
            // Our own metadata, queued by the core: always (re)disseminate.
            return Ok(Some(key));
        }
        let mut tables = lock(&self.tables);
        if key.addr == tables.own_addr {
            // News about ourselves (e.g. a previous life): we are the authority.
            return Ok(None);
        }
        let now_ms = tables.now_ms;
        let full = tables.metas.len() >= MEMBERS_MAX;
        let newer = match tables.metas.get(&key.addr) {
            Some(known) => (wire.bump, wire.seq) > (known.bump, known.seq),
            None => !full,
        };
        if !newer {
            return Ok(None);
        }
        tables.metas.insert(
            key.addr,
            MetaEntry {
                bump: wire.bump,
                seq: wire.seq,
                meta: wire.meta,
                received_ms: now_ms,
            },
        );
        tables.metas_changed = true;
        Ok(Some(key))
    }

    fn should_add_broadcast_data(&self, member: &SwimId) -> bool {
        lock(&self.tables)
            .broadcast_target
            .is_none_or(|target| target == member.addr)
    }
}
