//! Kafka's variable-length integers (zigzag varints and varlongs, unsigned LEB128) and
//! the bounds-checked cursor every decoder of this module reads through. A length read
//! here is always checked against the bytes present before it is used.

use super::BatchError;

/// ZigZag-encodes a 32-bit value so small magnitudes get short varints.
pub(super) fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// ZigZag-encodes a 64-bit value.
pub(super) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends `v` as a zigzag varint, as Kafka's `ByteUtils.writeVarint`.
pub(super) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(zigzag32(v)));
}

/// Appends `v` as a zigzag varlong, as Kafka's `ByteUtils.writeVarlong`.
pub(super) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

/// Appends an unsigned LEB128 value (7 bits per byte, low group first).
fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encoded size of `v` as a zigzag varint.
pub(super) fn varint_len(v: i32) -> usize {
    uvarint_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a zigzag varlong.
pub(super) fn varlong_len(v: i64) -> usize {
    uvarint_len(zigzag64(v))
}

/// Encoded size of an unsigned LEB128 value.
fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Clamps a length to `i32` for a length prefix. A field this large cannot
/// fit in a batch (`batchLength` is an `i32`), and [`BatchBuilder::build`]
/// refuses such batches, so the clamped value is never emitted.
pub(super) fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Cursor over `buf[..end]`. Positions are absolute within `buf` so that
/// errors report offsets from the start of the batch.
pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    pub(super) end: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`, starting at `pos`.
    pub(super) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos, end: buf.len() }
    }

    /// Bytes left before `end`.
    pub(super) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// Consumes exactly `n` bytes, or reports how many were needed.
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let truncated =
            BatchError::Truncated { needed: self.pos.saturating_add(n), have: self.end };
        let stop = match self.pos.checked_add(n) {
            Some(stop) if stop <= self.end => stop,
            _ => return Err(truncated),
        };
        let bytes = self.buf.get(self.pos..stop).ok_or(truncated)?;
        self.pos = stop;
        Ok(bytes)
    }

    /// Consumes a fixed-size array.
    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], BatchError> {
        let have = self.end;
        let needed = self.pos.saturating_add(N);
        self.take(N)?.try_into().map_err(|_| BatchError::Truncated { needed, have })
    }

    /// Consumes a big-endian `i8`.
    pub(super) fn i8(&mut self) -> Result<i8, BatchError> {
        self.array::<1>().map(i8::from_be_bytes)
    }

    /// Consumes a big-endian `i16`.
    pub(super) fn i16(&mut self) -> Result<i16, BatchError> {
        self.array::<2>().map(i16::from_be_bytes)
    }

    /// Consumes a big-endian `i32`.
    pub(super) fn i32(&mut self) -> Result<i32, BatchError> {
        self.array::<4>().map(i32::from_be_bytes)
    }

    /// Consumes a big-endian `u32`.
    pub(super) fn u32(&mut self) -> Result<u32, BatchError> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    /// Consumes a big-endian `i64`.
    pub(super) fn i64(&mut self) -> Result<i64, BatchError> {
        self.array::<8>().map(i64::from_be_bytes)
    }

    /// Reads an unsigned LEB128 value of at most `max_bytes` bytes. Like
    /// Kafka's `ByteUtils.readVarint`, bits of the final byte that do not fit
    /// the target width are discarded rather than rejected.
    pub(super) fn uvarint(&mut self, max_bytes: u32) -> Result<u64, BatchError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for i in 0..max_bytes {
            let [b] = self.array::<1>()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BatchError::BadVarint { offset: start })
    }

    /// Reads a zigzag varint (at most 5 bytes).
    pub(super) fn varint(&mut self) -> Result<i32, BatchError> {
        // Truncating to 32 bits mirrors Java's int shifts.
        let raw = self.uvarint(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// Reads a zigzag varlong (at most 10 bytes).
    pub(super) fn varlong(&mut self) -> Result<i64, BatchError> {
        let raw = self.uvarint(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// Reads a varint length prefix followed by that many bytes; -1 is null.
    /// The length is checked against the remaining bytes before any copy.
    pub(super) fn nullable_bytes(
        &mut self,
        what: &'static str,
    ) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::InvalidRecord { reason: what })?;
        self.take(len).map(Some)
    }
}
