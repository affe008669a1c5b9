//! Splitting a concatenation of batches (what a fetch returns) into one slice per batch,
//! framed by each header alone; checking their contents is left to `validate`.

use super::{parse_header, BatchError};
use std::iter::FusedIterator;

/// Iterator over the batches in a concatenation (see [`split_batches`]).
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Byte offset, within the input, of the next batch to be yielded (after
    /// an error: of the batch that failed). Lets a caller keep the valid
    /// prefix of the input.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<&'a [u8], BatchError>;

    /// Yields the next batch's bytes, framed by its header only (magic and
    /// `batchLength`); CRC and records are left to [`validate`]/[`records`].
    ///
    /// [`validate`]: fn@super::validate
    /// [`records`]: fn@super::records
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.bytes.get(self.pos..).filter(|r| !r.is_empty())?;
        let framed = parse_header(rest).and_then(|h| {
            let len = h.total_len();
            rest.get(..len).ok_or(BatchError::Truncated { needed: len, have: rest.len() })
        });
        match framed {
            Ok(batch) => {
                self.pos += batch.len();
                Some(Ok(batch))
            }
            Err(e) => {
                // One error ends the stream: after a bad frame there is no
                // reliable way to find the next batch boundary.
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for BatchIter<'_> {}

/// Iterate a concatenation of batches (what a fetch returns): yields each batch's byte
/// slice; stops with an error item on a truncated or garbled trailer. Never panics.
///
/// Each item is framed from its header only (see [`parse_header`]); call
/// [`validate`] or [`records`] on it to check CRC and contents. `Truncated`
/// errors count bytes from the start of the failing batch; use
/// [`BatchIter::offset`] for its position. Empty input yields nothing.
///
/// [`validate`]: fn@super::validate
/// [`records`]: fn@super::records
pub fn split_batches(bytes: &[u8]) -> BatchIter<'_> {
    BatchIter { bytes, pos: 0, failed: false }
}
