//! The record format every store holds: a fixed header, then a postcard-encoded body.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "ccpr"
//!      4     2  format version, little-endian (RECORD_FORMAT_VERSION)
//!      6     2  reserved, zero
//!      8    32  BLAKE3 digest of the body: the checksum, and the record's content digest
//!     40     …  body: postcard of { identity, dependencies, inferred, artifact }
//! ```
//!
//! The inferred result and the artifact are themselves postcard bytes inside the body, so a
//! record whose payload no longer decodes (a compiler whose types changed without a new
//! version) is refused like a damaged one.

use serde::{Deserialize, Serialize};

use super::identity::{Fingerprint, Identity, InstanceId, MethodId, TypeId};
use super::layered::Verifier;
use super::store::RecordKey;
use crate::sync::Arc;

/// The version of the record format this build reads and writes. A record of another version is
/// refused ([`StatsSnapshot::persist_refused_format`](crate::StatsSnapshot::persist_refused_format))
/// and replaced when the instance is compiled again.
pub const RECORD_FORMAT_VERSION: u16 = 1;

const MAGIC: [u8; 4] = *b"ccpr";
const HEADER: usize = 40;

/// A dispatch answer as the compiler saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// A method instance of this method (for the query's argument types).
    Method(MethodId),
    /// An error (no method, an ambiguity), as its message: the compiler saw only the error.
    Error(String),
}

/// A dependency `infer` recorded, in terms a later process can re-issue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Dep {
    /// `InferCx::dispatch` of `function` with `argtypes` through the cache's stack.
    Dispatch {
        function: String,
        argtypes: Vec<TypeId>,
        answer: Answer,
    },
    /// `InferCx::depend_on` of an instance.
    DependOn(InstanceId),
    /// `InferCx::compile` of an instance: the content digest of the callee's result when it was
    /// ready, `None` when it was in progress further up the chain.
    Compiled {
        instance: InstanceId,
        callee: Option<Fingerprint>,
    },
}

/// A record's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) identity: Identity,
    pub(crate) deps: Vec<Dep>,
    pub(crate) inferred: Vec<u8>,
    pub(crate) artifact: Vec<u8>,
}

/// Why a record's bytes were refused before anything in it was looked at.
#[derive(Debug)]
pub(crate) enum Unreadable {
    /// Truncated, not a record, failed its checksum, or did not decode.
    Corrupt,
    /// Written in another format version.
    Format,
}

/// The record's bytes and content digest.
pub(crate) fn encode(body: &Body) -> Option<(Vec<u8>, Fingerprint)> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&RECORD_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&[0; 32]);
    let mut bytes = postcard::to_extend(body, bytes).ok()?;
    let digest = Fingerprint::of(&bytes[HEADER..]);
    bytes[8..HEADER].copy_from_slice(&digest.0);
    Some((bytes, digest))
}

/// The body and content digest of a record, checked: header, version, checksum, and a body that
/// decodes with nothing left over.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Body, Fingerprint), Unreadable> {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return Err(Unreadable::Corrupt);
    }
    if bytes[4..6] != RECORD_FORMAT_VERSION.to_le_bytes() {
        return Err(Unreadable::Format);
    }
    let digest = Fingerprint::of(&bytes[HEADER..]);
    if bytes[8..HEADER] != digest.0 {
        return Err(Unreadable::Corrupt);
    }
    match postcard::take_from_bytes::<Body>(&bytes[HEADER..]) {
        Ok((body, [])) => Ok((body, digest)),
        _ => Err(Unreadable::Corrupt),
    }
}

/// Whether `bytes` are intact as far as a store can tell without the engine: a record header,
/// and, for a record of this format version, a body that matches its checksum. A record of
/// another format version passes (this build cannot check it; the engine refuses it on load and
/// counts it).
fn intact(bytes: &[u8]) -> bool {
    if bytes.len() < HEADER || bytes[..4] != MAGIC {
        return false;
    }
    if bytes[4..6] != RECORD_FORMAT_VERSION.to_le_bytes() {
        return true;
    }
    bytes[8..HEADER] == Fingerprint::of(&bytes[HEADER..]).0
}

/// The engine's check of a record's integrity, for
/// [`LayeredOptions::verify`](super::LayeredOptions::verify): a record that is truncated, not a
/// record, or fails its checksum is rejected, so a [`LayeredStore`](super::LayeredStore) neither
/// returns it nor copies it into a faster tier, and goes on to the next tier.
///
/// ```
/// use std::sync::Arc;
/// use compiler_caching::{record_verifier, LayeredOptions, LayeredStore, MemoryStore};
///
/// let local = Arc::new(MemoryStore::new());
/// let shared = Arc::new(MemoryStore::new()); // a RedisStore, in a fleet
/// let store = LayeredStore::new(
///     vec![local, shared],
///     LayeredOptions {
///         verify: Some(record_verifier()),
///         ..LayeredOptions::default()
///     },
/// );
/// # drop(store);
/// ```
pub fn record_verifier() -> Verifier {
    Arc::new(|_: &RecordKey, bytes: &[u8]| intact(bytes))
}
