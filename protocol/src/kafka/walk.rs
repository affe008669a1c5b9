//! The walk: reads a request body exactly as kafka-protocol will, allocating nothing,
//! and proves every length and count fits in the bytes that remain before the crate
//! sees them. A count is checked against the fewest bytes its elements can take, so the
//! crate's `Vec::with_capacity(count)` is bounded by the frame the client really sent.
//! On top, the walk charges what the crate will reserve (each array's `count` times
//! its element's size, each unknown tagged field a map node) against
//! [`crate::codec::decode_budget`] of the body, as every other decoder here does.

use super::schema::{Schema, Ty};
use super::DecodeError;
use crate::codec::decode_budget;

/// What one unknown tagged field costs the crate: its share of a `BTreeMap` node
/// (a leaf for `<i32, Bytes>` is about 400 bytes).
const TAGGED_FIELD_BYTES: usize = 512;

/// How a length or count is encoded, for [`super::length_fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthField {
    /// int16 (string lengths).
    Int16,
    /// int32 (bytes lengths, array counts).
    Int32,
    /// Unsigned varint (compact lengths and counts, tagged-field counts and sizes).
    Varint,
}

/// A cursor over the body; never reads past its end.
pub(super) struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    version: i16,
    /// Bytes the crate will reserve for what has been walked so far, and the most allowed.
    charged: usize,
    budget: usize,
    /// Where each length field starts, only when asked for (tests).
    trace: Option<Vec<(usize, LengthField)>>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(buf: &'a [u8], version: i16) -> Self {
        Walk { buf, pos: 0, version, charged: 0, budget: decode_budget(buf.len()), trace: None }
    }

    pub(super) fn traced(buf: &'a [u8], version: i16) -> Self {
        Walk { trace: Some(Vec::new()), ..Walk::new(buf, version) }
    }

    pub(super) fn into_trace(self) -> Vec<(usize, LengthField)> {
        self.trace.unwrap_or_default()
    }

    fn note(&mut self, kind: LengthField) {
        let pos = self.pos;
        if let Some(trace) = self.trace.as_mut() {
            trace.push((pos, kind));
        }
    }

    fn unnote(&mut self) {
        if let Some(trace) = self.trace.as_mut() {
            trace.pop();
        }
    }

    /// Bytes not yet walked.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn int(&mut self, width: usize) -> Result<i64, DecodeError> {
        let bytes = self.take(width)?;
        let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
        for b in bytes {
            v = (v << 8) | i64::from(*b);
        }
        Ok(v)
    }

    /// Kafka's unsigned varint, at most 5 bytes; one that does not fit a u32 is
    /// rejected (the crate would silently wrap it).
    fn uvarint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value)
                    .map_err(|_| DecodeError::Invalid("varint does not fit 32 bits".into()));
            }
        }
        Err(DecodeError::Invalid("varint longer than 5 bytes".into()))
    }

    /// A wire length or count: `None` for null, else checked against what remains,
    /// each unit needing at least `unit` bytes.
    fn checked(&mut self, len: i64, unit: usize) -> Result<Option<usize>, DecodeError> {
        if len == -1 {
            return Ok(None);
        }
        let n = usize::try_from(len)
            .map_err(|_| DecodeError::Invalid(format!("negative length {len}")))?;
        let need = n.saturating_mul(unit.max(1));
        if need > self.remaining() {
            return Err(DecodeError::LengthTooLarge { length: n, remaining: self.remaining() });
        }
        Ok(Some(n))
    }

    fn charge(&mut self, bytes: usize) -> Result<(), DecodeError> {
        self.charged = self.charged.saturating_add(bytes);
        if self.charged > self.budget {
            return Err(DecodeError::OverBudget { input: self.buf.len(), budget: self.budget });
        }
        Ok(())
    }

    /// A compact length: the varint holds length + 1, 0 meaning null.
    fn compact(&mut self, unit: usize) -> Result<Option<usize>, DecodeError> {
        let raw = self.uvarint()?;
        self.checked(i64::from(raw) - 1, unit)
    }

    pub(super) fn ty(&mut self, ty: &Ty) -> Result<(), DecodeError> {
        match ty {
            Ty::Fixed(n) => self.take(*n).map(drop),
            Ty::Str => {
                self.note(LengthField::Int16);
                let len = self.int(2)?;
                self.skip(len)
            }
            Ty::Bytes => {
                self.note(LengthField::Int32);
                let len = self.int(4)?;
                self.skip(len)
            }
            Ty::CStr | Ty::CBytes => {
                self.note(LengthField::Varint);
                let n = self.compact(1)?;
                self.take(n.unwrap_or(0)).map(drop)
            }
            Ty::Array(elem) => {
                self.note(LengthField::Int32);
                let len = self.int(4)?;
                let n = self.checked(len, elem.min_size(self.version))?;
                self.elements(elem, n)
            }
            Ty::CArray(elem) => {
                self.note(LengthField::Varint);
                let n = self.compact(elem.min_size(self.version))?;
                self.elements(elem, n)
            }
            Ty::Struct(s) => self.schema(s),
        }
    }

    fn skip(&mut self, len: i64) -> Result<(), DecodeError> {
        let n = self.checked(len, 1)?;
        self.take(n.unwrap_or(0)).map(drop)
    }

    fn elements(&mut self, elem: &Ty, n: Option<usize>) -> Result<(), DecodeError> {
        let n = n.unwrap_or(0);
        self.charge(n.saturating_mul(elem.held()))?;
        for _ in 0..n {
            self.ty(elem)?;
        }
        Ok(())
    }

    /// One struct: its fields at this version, then its tagged fields if flexible.
    pub(super) fn schema(&mut self, s: &Schema) -> Result<(), DecodeError> {
        let v = self.version;
        for field in s.fields.iter().filter(|f| f.from <= v && v <= f.to) {
            self.ty(&field.ty)?;
        }
        if v >= s.flexible_from {
            self.tagged(s)?;
        }
        Ok(())
    }

    /// The tagged-field section. The crate reads a tag it knows from the stream itself
    /// (ignoring the declared size) and keeps any other as bytes of the declared size.
    fn tagged(&mut self, s: &Schema) -> Result<(), DecodeError> {
        self.note(LengthField::Varint);
        let count = self.uvarint()?;
        // Each tagged field takes at least two bytes (tag and size).
        self.checked(i64::from(count), 2)?;
        for _ in 0..count {
            let tag = self.uvarint()?;
            self.note(LengthField::Varint);
            let size = self.uvarint()?;
            let known = s.tags.iter().find(|t| t.tag == tag);
            if known.is_some() {
                self.unnote(); // the crate ignores a known tag's size
            }
            match known {
                Some(known) if self.version >= known.from => self.ty(&known.ty)?,
                Some(_) => {
                    return Err(DecodeError::Invalid(format!(
                        "{}: tag {tag} is not valid for version {}",
                        s.name, self.version
                    )))
                }
                None => {
                    self.charge(TAGGED_FIELD_BYTES)?;
                    self.skip(i64::from(size))?;
                }
            }
        }
        Ok(())
    }
}
