//! The decode budget: a serde `Deserializer` wrapper that charges every allocation a
//! decoded value makes to a byte budget *before* the allocation happens.
//!
//! bincode's own limit counts the scalars it reads, but not the slots of sequences and
//! maps, so `Vec<Vec<String>>` of empty strings or a map of one-byte keys grew 17x to
//! 29x its input on decode. Here every heap allocation of a wire type is charged:
//! - a string or byte blob: its length, checked against the bytes left in the input
//!   (a blob cannot be longer than what follows it) and the budget, before bincode
//!   allocates it;
//! - a sequence (`Vec`): the capacity `Vec` grows to as elements are pushed (the same
//!   amortized doubling), element by element, before the element is decoded; no
//!   capacity is reserved up front (the size hint is hidden), so a claimed length costs
//!   nothing until its elements arrive, and it may not exceed the bytes left;
//! - a map (`BTreeMap`): a whole leaf node for the first entry and three slots per
//!   entry after it (nodes stay at least about half full).
//!
//! Inline values (structs, tuples, options, enum payloads) are charged as part of the
//! slot that holds them. Wire types are not recursive, so nesting depth is bounded by
//! the types themselves. The wrapper only sees serde's data model: a wire type that
//! boxes values or uses hash sets would need its own charge here.

use bincode::de::read::Reader;
use bincode::error::DecodeError;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;
use std::mem::size_of;

/// Entries of one `BTreeMap` leaf node (std's `B = 6`: capacity `2 * B - 1`).
const BTREE_LEAF_ENTRIES: usize = 11;
/// Bytes of a `BTreeMap` node besides its entries (parent pointer, index, length).
const BTREE_NODE_HEADER_BYTES: usize = 16;
/// Bytes charged per map entry after the first, per byte of key or value: nodes split
/// in half, so each holds at least 5 of 11 entries, plus internal nodes.
const BTREE_SLOTS_PER_ENTRY: usize = 3;

/// Shared state of one decode: the input, the read position and the bytes left to spend.
pub(crate) struct Budget<'b> {
    input: &'b [u8],
    pos: Cell<usize>,
    left: Cell<usize>,
    /// Set when a charge did not fit, so the caller can report the budget, not a
    /// generic decode error.
    exceeded: Cell<bool>,
}

impl<'b> Budget<'b> {
    pub(crate) fn new(input: &'b [u8], budget_bytes: usize) -> Budget<'b> {
        Budget {
            input,
            pos: Cell::new(0),
            left: Cell::new(budget_bytes),
            exceeded: Cell::new(false),
        }
    }

    /// Bytes of input consumed so far.
    pub(crate) fn consumed(&self) -> usize {
        self.pos.get()
    }

    /// Whether the decode failed because the budget ran out.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded.get()
    }

    fn rest(&self) -> &'b [u8] {
        &self.input[self.pos.get().min(self.input.len())..]
    }

    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom(format!(
                    "decoding needs {bytes} more bytes of memory than its budget leaves"
                )))
            }
        }
    }

    /// The length prefix at the read position (bincode's varint: one byte below 251,
    /// else 251/252/253 followed by a u16/u32/u64) and the bytes after it, without
    /// consuming it. `None` if it cannot be read: bincode then reports the error.
    fn peek_len(&self) -> Option<(u64, usize)> {
        let rest = self.rest();
        let (&tag, tail) = rest.split_first()?;
        let (len, prefix) = match tag {
            0..=250 => (u64::from(tag), 1),
            251 => (u64::from(u16::from_le_bytes(tail.get(..2)?.try_into().ok()?)), 3),
            252 => (u64::from(u32::from_le_bytes(tail.get(..4)?.try_into().ok()?)), 5),
            253 => (u64::from_le_bytes(tail.get(..8)?.try_into().ok()?), 9),
            _ => return None,
        };
        Some((len, rest.len() - prefix))
    }

    /// Check a length-prefixed value's claimed length against the input that follows
    /// it; a blob (string, bytes) is also charged its length here, before bincode
    /// allocates it.
    fn check_len<E: de::Error>(&self, what: &str, blob: bool) -> Result<(), E> {
        let Some((len, remaining)) = self.peek_len() else { return Ok(()) };
        if len > remaining as u64 {
            return Err(E::custom(format!(
                "{what} claims {len} elements but only {remaining} bytes follow"
            )));
        }
        if blob {
            self.charge(len as usize)?;
        }
        Ok(())
    }
}

/// Reads the budget's input, advancing its position (so lengths can be peeked).
pub(crate) struct BudgetReader<'b>(pub(crate) &'b Budget<'b>);

impl Reader for BudgetReader<'_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), DecodeError> {
        let rest = self.0.rest();
        let src = rest.get(..bytes.len()).ok_or_else(|| DecodeError::UnexpectedEnd {
            additional: bytes.len().saturating_sub(rest.len()),
        })?;
        bytes.copy_from_slice(src);
        self.0.pos.set(self.0.pos.get() + bytes.len());
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.0.rest().get(..n)
    }

    fn consume(&mut self, n: usize) {
        self.0.pos.set(self.0.pos.get() + n);
    }
}

/// Whether a visited sequence or map is a heap collection (charged) or an inline
/// tuple, struct or enum payload (not charged: its slot was).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Heap,
    Inline,
}

/// A deserializer that charges the budget for what it decodes.
pub(crate) struct Budgeted<'b, D> {
    pub(crate) de: D,
    pub(crate) b: &'b Budget<'b>,
}

struct Visit<'b, V> {
    v: V,
    b: &'b Budget<'b>,
    mode: Mode,
}

struct Seed<'b, S> {
    s: S,
    b: &'b Budget<'b>,
}

struct Seq<'b, A> {
    a: A,
    b: &'b Budget<'b>,
    mode: Mode,
    len: usize,
    cap: usize,
}

struct Map<'b, A> {
    a: A,
    b: &'b Budget<'b>,
    mode: Mode,
    entries: usize,
}

struct Enum<'b, A> {
    a: A,
    b: &'b Budget<'b>,
}

impl<'b, D> Budgeted<'b, D> {
    fn inline<V>(&self, v: V) -> Visit<'b, V> {
        Visit { v, b: self.b, mode: Mode::Inline }
    }
}

macro_rules! forward_deserialize {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
            let v = self.inline(v);
            self.de.$method(v)
        }
    )*};
}

impl<'de, 'b, D: Deserializer<'de>> Deserializer<'de> for Budgeted<'b, D> {
    type Error = D::Error;

    forward_deserialize!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_option,
        deserialize_unit,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a string", true)?;
        let v = self.inline(v);
        self.de.deserialize_str(v)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a string", true)?;
        let v = self.inline(v);
        self.de.deserialize_string(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a byte string", true)?;
        let v = self.inline(v);
        self.de.deserialize_bytes(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a byte string", true)?;
        let v = self.inline(v);
        self.de.deserialize_byte_buf(v)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a sequence", false)?;
        self.de.deserialize_seq(Visit { v, b: self.b, mode: Mode::Heap })
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, D::Error> {
        self.b.check_len("a map", false)?;
        self.de.deserialize_map(Visit { v, b: self.b, mode: Mode::Heap })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_unit_struct(name, v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_newtype_struct(name, v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_tuple(len, v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_tuple_struct(name, len, v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_struct(name, fields, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, D::Error> {
        let v = self.inline(v);
        self.de.deserialize_enum(name, variants, v)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method<E: de::Error>(self, x: $ty) -> Result<V::Value, E> {
            self.v.$method(x)
        }
    )*};
}

impl<'de, 'b, V: Visitor<'de>> Visitor<'de> for Visit<'b, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.v.expecting(f)
    }

    forward_visit!(
        visit_bool: bool, visit_i8: i8, visit_i16: i16, visit_i32: i32, visit_i64: i64, visit_i128: i128,
        visit_u8: u8, visit_u16: u16, visit_u32: u32, visit_u64: u64, visit_u128: u128, visit_f32: f32,
        visit_f64: f64, visit_char: char, visit_str: &str, visit_borrowed_str: &'de str, visit_string: String,
        visit_bytes: &[u8], visit_borrowed_bytes: &'de [u8], visit_byte_buf: Vec<u8>,
    );

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.v.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_some(Budgeted { de, b: self.b })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.v.visit_newtype_struct(Budgeted { de, b: self.b })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.v.visit_seq(Seq { a, b: self.b, mode: self.mode, len: 0, cap: 0 })
    }

    fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.v.visit_map(Map { a, b: self.b, mode: self.mode, entries: 0 })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, a: A) -> Result<V::Value, A::Error> {
        self.v.visit_enum(Enum { a, b: self.b })
    }
}

impl<'de, 'b, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'b, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.s.deserialize(Budgeted { de, b: self.b })
    }
}

/// The capacity `Vec` grows to when pushing element number `len` (1-based) into
/// `cap` slots of `elem` bytes: std's amortized growth (double, at least 8 slots for
/// bytes, 4 up to 1 KiB, else 1).
fn vec_grown_cap(cap: usize, len: usize, elem: usize) -> usize {
    if len <= cap {
        return cap;
    }
    let min_cap = match elem {
        1 => 8,
        2..=1024 => 4,
        _ => 1,
    };
    cap.saturating_mul(2).max(len).max(min_cap)
}

impl<'de, 'b, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'b, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        s: S,
    ) -> Result<Option<S::Value>, A::Error> {
        if self.mode == Mode::Heap {
            // Charged for the slot before the element exists (the Vec grows on push).
            self.len += 1;
            let elem = size_of::<S::Value>();
            let cap = vec_grown_cap(self.cap, self.len, elem);
            self.b.charge((cap - self.cap).saturating_mul(elem))?;
            self.cap = cap;
        }
        self.a.next_element_seed(Seed { s, b: self.b })
    }

    fn size_hint(&self) -> Option<usize> {
        // A heap sequence reserves nothing up front: its slots are charged as it grows.
        match self.mode {
            Mode::Heap => None,
            Mode::Inline => self.a.size_hint(),
        }
    }
}

impl<'b, A> Map<'b, A> {
    /// The charge for one key or value of `bytes` bytes: the first entry pays for a
    /// whole leaf node.
    fn entry_charge(&self, bytes: usize) -> usize {
        if self.entries == 1 {
            BTREE_LEAF_ENTRIES * bytes + BTREE_NODE_HEADER_BYTES
        } else {
            BTREE_SLOTS_PER_ENTRY * bytes + BTREE_NODE_HEADER_BYTES
        }
    }
}

impl<'de, 'b, A: MapAccess<'de>> MapAccess<'de> for Map<'b, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        k: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if self.mode == Mode::Heap {
            self.entries += 1;
            self.b.charge(self.entry_charge(size_of::<K::Value>()))?;
        }
        self.a.next_key_seed(Seed { s: k, b: self.b })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, v: V) -> Result<V::Value, A::Error> {
        if self.mode == Mode::Heap {
            self.b.charge(self.entry_charge(size_of::<V::Value>()))?;
        }
        self.a.next_value_seed(Seed { s: v, b: self.b })
    }

    fn size_hint(&self) -> Option<usize> {
        match self.mode {
            Mode::Heap => None,
            Mode::Inline => self.a.size_hint(),
        }
    }
}

impl<'de, 'b, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'b, A> {
    type Error = A::Error;
    type Variant = Enum<'b, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        s: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.a.variant_seed(Seed { s, b: self.b })?;
        Ok((value, Enum { a: variant, b: self.b }))
    }
}

impl<'de, 'b, A: VariantAccess<'de>> VariantAccess<'de> for Enum<'b, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.a.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, s: S) -> Result<S::Value, A::Error> {
        self.a.newtype_variant_seed(Seed { s, b: self.b })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, A::Error> {
        self.a.tuple_variant(len, Visit { v, b: self.b, mode: Mode::Inline })
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, A::Error> {
        self.a.struct_variant(fields, Visit { v, b: self.b, mode: Mode::Inline })
    }
}
