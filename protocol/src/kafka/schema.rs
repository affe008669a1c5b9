//! The shape of a Kafka request as kafka-protocol reads it: per struct, the fields in
//! wire order with the versions that carry them, where tagged fields start, and the
//! tagged fields the crate decodes itself. The tables (schema_*.rs) are generated from
//! the crate's decoders by scripts/gen-kafka-schema.py.

use std::mem::size_of;

use kafka_protocol::protocol::StrBytes;

/// How one field is encoded on the wire.
#[derive(Debug)]
pub(super) enum Ty {
    /// A fixed-width value: int8..int64, boolean, float64, uuid.
    Fixed(usize),
    /// int16 length (-1 null) then that many bytes.
    Str,
    /// unsigned varint length + 1 (0 null) then that many bytes.
    CStr,
    /// int32 length (-1 null) then that many bytes.
    Bytes,
    /// unsigned varint length + 1 (0 null) then that many bytes.
    CBytes,
    /// int32 count (-1 null) then that many elements.
    Array(&'static Ty),
    /// unsigned varint count + 1 (0 null) then that many elements.
    CArray(&'static Ty),
    /// The fields of another struct, in place.
    Struct(&'static Schema),
}

/// Shorthands the generated tables use.
#[allow(non_snake_case)]
pub(super) const fn ARR(elem: &'static Ty) -> Ty {
    Ty::Array(elem)
}

#[allow(non_snake_case)]
pub(super) const fn CARR(elem: &'static Ty) -> Ty {
    Ty::CArray(elem)
}

/// One field, present in versions `from..=to`.
#[derive(Debug)]
pub(super) struct Field {
    pub(super) from: i16,
    pub(super) to: i16,
    pub(super) ty: Ty,
}

pub(super) const fn f(from: i16, to: i16, ty: Ty) -> Field {
    Field { from, to, ty }
}

/// A tagged field the crate decodes (not just keeps as bytes). Below version `from`
/// the crate rejects the tag.
#[derive(Debug)]
pub(super) struct Tag {
    pub(super) tag: u32,
    pub(super) from: i16,
    pub(super) ty: Ty,
}

/// One request struct.
#[derive(Debug)]
pub(super) struct Schema {
    pub(super) name: &'static str,
    /// `size_of` the crate's struct: what each element of an array of it reserves.
    pub(super) size: usize,
    pub(super) fields: &'static [Field],
    /// First version with a tagged-field section (Kafka's "flexible versions").
    pub(super) flexible_from: i16,
    pub(super) tags: &'static [Tag],
}

impl Ty {
    /// The fewest bytes one value of this type takes at `version`: what an array
    /// count is checked against before anything is allocated for it.
    pub(super) fn min_size(&self, version: i16) -> usize {
        match self {
            Ty::Fixed(n) => *n,
            Ty::Str => 2,
            Ty::Bytes | Ty::Array(_) => 4,
            Ty::CStr | Ty::CBytes | Ty::CArray(_) => 1,
            Ty::Struct(s) => s.min_size(version),
        }
    }
}

impl Ty {
    /// The bytes one element of this type takes in the `Vec` the crate reserves for an
    /// array of it: strings are `StrBytes`, bytes `bytes::Bytes` (both views into the
    /// frame, so nothing more), structs their own size.
    pub(super) fn held(&self) -> usize {
        match self {
            Ty::Fixed(n) => *n,
            Ty::Str | Ty::CStr => size_of::<StrBytes>(),
            Ty::Bytes | Ty::CBytes => size_of::<bytes::Bytes>(),
            Ty::Array(_) | Ty::CArray(_) => size_of::<Vec<u8>>(),
            Ty::Struct(s) => s.size,
        }
    }
}

impl Schema {
    pub(super) fn min_size(&self, version: i16) -> usize {
        let fields: usize = self
            .fields
            .iter()
            .filter(|f| f.from <= version && version <= f.to)
            .map(|f| f.ty.min_size(version))
            .sum();
        fields + usize::from(version >= self.flexible_from)
    }
}
