//! The header of every internal object: magic, format version, kind, length and
//! crc32c, checked on every read.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "EXF1"
//! 4       2     format version (little endian)
//! 6       2     object kind (little endian)
//! 8       8     payload length in bytes (little endian)
//! 16      4     crc32c of bytes 4..16 followed by the payload
//! 20      ..    payload (postcard, or raw bytes)
//! ```
//!
//! A truncated, extended or bit-flipped object fails the length or the checksum
//! test and is reported with its key; it is never decoded into a value.

use serde::{de::DeserializeOwned, Serialize};

/// First bytes of every internal object.
pub const MAGIC: [u8; 4] = *b"EXF1";
/// The object format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the header in bytes.
pub const HEADER_LEN: usize = 20;

/// What an object holds; a reader states the kind it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// A task's committed output.
    TaskOutput = 1,
    /// A workflow status version.
    Status = 2,
    /// A workflow's metadata (DAG name, arguments).
    Meta = 3,
    /// A batch of task timing records.
    Timing = 4,
    /// A group-committed segment of run records.
    Journal = 5,
    /// An epoch log part of a streaming source partition.
    EpochLog = 6,
    /// An epoch commit record.
    EpochCommit = 7,
    /// Part of a snapshot.
    Snapshot = 8,
    /// A snapshot manifest.
    Manifest = 9,
    /// Any other object a user of the engine writes through the header.
    Other = 15,
}

impl Kind {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            1 => Self::TaskOutput,
            2 => Self::Status,
            3 => Self::Meta,
            4 => Self::Timing,
            5 => Self::Journal,
            6 => Self::EpochLog,
            7 => Self::EpochCommit,
            8 => Self::Snapshot,
            9 => Self::Manifest,
            15 => Self::Other,
            _ => return None,
        })
    }
}

/// Why an object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a whole, intact object.
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// Store key of the object.
        key: String,
        /// What check failed.
        reason: String,
    },
    /// Intact, but written by another format version of exoflow.
    #[error("object {key} has format version {found}, this build reads version {expected}: use the exoflow release that wrote this store")]
    Version {
        /// Store key of the object.
        key: String,
        /// Version found in the header.
        found: u16,
        /// Version this build reads.
        expected: u16,
    },
}

/// Starts an object: a buffer holding a header placeholder. Append the payload,
/// then call [`seal`].
pub fn begin(capacity: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + capacity);
    buf.resize(HEADER_LEN, 0);
    buf
}

/// Fills in the header of a buffer made by [`begin`] with a payload appended.
pub fn seal(buf: &mut [u8], kind: Kind) {
    debug_assert!(buf.len() >= HEADER_LEN);
    let len = (buf.len() - HEADER_LEN) as u64;
    buf[0..4].copy_from_slice(&MAGIC);
    buf[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    buf[6..8].copy_from_slice(&(kind as u16).to_le_bytes());
    buf[8..16].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[4..16]), &buf[HEADER_LEN..]);
    buf[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Wraps raw bytes in a header.
pub fn wrap(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut buf = begin(payload.len());
    buf.extend_from_slice(payload);
    seal(&mut buf, kind);
    buf
}

/// Serializes `value` with postcard behind a header.
pub fn encode<T: Serialize + ?Sized>(kind: Kind, value: &T) -> Result<Vec<u8>, postcard::Error> {
    // Size first, so that a large payload is copied once into a buffer of
    // the right size.
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())?;
    let mut buf = postcard::to_extend(value, begin(size))?;
    seal(&mut buf, kind);
    Ok(buf)
}

/// Checks the header of `bytes` (read from `key`) and returns the payload.
pub fn unwrap<'a>(key: &str, kind: Kind, bytes: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let corrupt = |reason: String| DecodeError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    if bytes.len() < HEADER_LEN {
        return Err(corrupt(format!(
            "{} bytes, shorter than the {HEADER_LEN}-byte header (truncated?)",
            bytes.len()
        )));
    }
    if bytes[0..4] != MAGIC {
        return Err(corrupt("bad magic: not an exoflow object".to_owned()));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let mut len8 = [0u8; 8];
    len8.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len8);
    let mut crc4 = [0u8; 4];
    crc4.copy_from_slice(&bytes[16..20]);
    let stored_crc = u32::from_le_bytes(crc4);
    let actual_len = (bytes.len() - HEADER_LEN) as u64;
    if len != actual_len {
        return Err(corrupt(format!(
            "header says {len} payload bytes, object has {actual_len} (truncated or extended)"
        )));
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[4..16]), &bytes[HEADER_LEN..]);
    if crc != stored_crc {
        return Err(corrupt(format!(
            "checksum mismatch (stored {stored_crc:08x}, computed {crc:08x})"
        )));
    }
    if version != FORMAT_VERSION {
        return Err(DecodeError::Version {
            key: key.to_owned(),
            found: version,
            expected: FORMAT_VERSION,
        });
    }
    let found = u16::from_le_bytes([bytes[6], bytes[7]]);
    if found != kind as u16 {
        let name = Kind::from_u16(found)
            .map_or_else(|| format!("unknown kind {found}"), |k| format!("{k:?}"));
        return Err(corrupt(format!("holds a {name} object, expected {kind:?}")));
    }
    Ok(&bytes[HEADER_LEN..])
}

/// Checks the header and deserializes the postcard payload.
pub fn decode<T: DeserializeOwned>(key: &str, kind: Kind, bytes: &[u8]) -> Result<T, DecodeError> {
    let payload = unwrap(key, kind, bytes)?;
    postcard::from_bytes(payload).map_err(|e| DecodeError::Corrupt {
        key: key.to_owned(),
        reason: format!("checksum valid but payload does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<(), Box<dyn std::error::Error>> {
        let bytes = encode(Kind::Meta, &(7u64, "hello".to_owned()))?;
        let back: (u64, String) = decode("k", Kind::Meta, &bytes)?;
        assert_eq!(back, (7, "hello".to_owned()));
        Ok(())
    }

    #[test]
    fn every_single_bit_flip_and_truncation_is_detected() -> Result<(), Box<dyn std::error::Error>>
    {
        let bytes = encode(Kind::TaskOutput, &vec![1u32, 2, 3, 400_000])?;
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let err = unwrap("wf/tasks/t", Kind::TaskOutput, &b).expect_err("flip undetected");
            assert!(err.to_string().contains("wf/tasks/t"), "{err}");
        }
        for n in 0..bytes.len() {
            assert!(
                unwrap("k", Kind::TaskOutput, &bytes[..n]).is_err(),
                "truncation to {n}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(unwrap("k", Kind::TaskOutput, &longer).is_err());
        Ok(())
    }

    #[test]
    fn kind_and_version_are_checked() -> Result<(), Box<dyn std::error::Error>> {
        let bytes = encode(Kind::Status, &1u8)?;
        assert!(matches!(
            unwrap("k", Kind::Meta, &bytes),
            Err(DecodeError::Corrupt { .. })
        ));
        let mut other = bytes.clone();
        other[4..6].copy_from_slice(&2u16.to_le_bytes());
        // Recompute the checksum so that only the version differs.
        let payload = other[HEADER_LEN..].to_vec();
        let mut resealed = begin(payload.len());
        resealed.extend_from_slice(&payload);
        seal(&mut resealed, Kind::Status);
        resealed[4..6].copy_from_slice(&2u16.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&resealed[4..16]), &resealed[HEADER_LEN..]);
        resealed[16..20].copy_from_slice(&crc.to_le_bytes());
        let err = unwrap("k", Kind::Status, &resealed).expect_err("version");
        assert!(
            matches!(err, DecodeError::Version { found: 2, .. }),
            "{err}"
        );
        Ok(())
    }
}
