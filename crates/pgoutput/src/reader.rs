//! A bounds-checked cursor over one message.
//!
//! Every read checks the remaining length first and returns a [`DecodeError`] naming the
//! message kind, field and offset; nothing here indexes without a check, so no input can
//! panic. Byte strings are `Bytes::slice`s of the input, never copies.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::lsn::Lsn;
use crate::message::MessageKind;
use crate::time::PgTimestamp;

pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    kind: MessageKind,
}

impl<'a> Reader<'a> {
    /// Starts after the tag byte, which the caller has already matched.
    pub(crate) fn after_tag(buf: &'a Bytes, kind: MessageKind) -> Self {
        Reader { buf, pos: 1, kind }
    }

    pub(crate) fn kind(&self) -> MessageKind {
        self.kind
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let chunk = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or_else(|| self.truncated(field, N))?;
        self.pos += N;
        Ok(*chunk)
    }

    pub(crate) fn truncated(&self, field: &'static str, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            kind: self.kind,
            field,
            offset: self.pos,
            needed,
            remaining: self.remaining(),
        }
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(field)?))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take(field)?))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take(field)?))
    }

    pub(crate) fn lsn(&mut self, field: &'static str) -> Result<Lsn, DecodeError> {
        Ok(Lsn::new(u64::from_be_bytes(self.take(field)?)))
    }

    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<PgTimestamp, DecodeError> {
        Ok(PgTimestamp::from_pg_micros(self.i64(field)?))
    }

    /// An `Int32` length that must be non-negative and fit in what is left of the message.
    pub(crate) fn length(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let length = self.i32(field)?;
        let length = usize::try_from(length).map_err(|_| DecodeError::NegativeLength {
            kind: self.kind,
            field,
            offset: at,
            length: i64::from(length),
        })?;
        if length > self.remaining() {
            return Err(self.truncated(field, length));
        }
        Ok(length)
    }

    /// `len` bytes as a zero-copy slice of the input.
    pub(crate) fn bytes(&mut self, len: usize, field: &'static str) -> Result<Bytes, DecodeError> {
        if len > self.remaining() {
            return Err(self.truncated(field, len));
        }
        let slice = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(slice)
    }

    /// A NUL-terminated UTF-8 string (pgoutput's `String`).
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let start = self.pos;
        let rest = self.buf.get(start..).unwrap_or_default();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::MissingNul {
                kind: self.kind,
                field,
                offset: start,
            })?;
        let text = std::str::from_utf8(&rest[..nul]).map_err(|_| DecodeError::InvalidUtf8 {
            kind: self.kind,
            field,
            offset: start,
        })?;
        self.pos = start + nul + 1;
        Ok(text.to_owned())
    }

    /// Fails unless at least `count` items of `min_size` bytes each could still follow, so a
    /// capacity derived from `count` is bounded by the input's real length.
    pub(crate) fn ensure_room(
        &self,
        field: &'static str,
        count: usize,
        min_size: usize,
    ) -> Result<(), DecodeError> {
        let needed = count.saturating_mul(min_size);
        if needed > self.remaining() {
            return Err(self.truncated(field, needed));
        }
        Ok(())
    }

    pub(crate) fn expect_byte(
        &mut self,
        field: &'static str,
        expected: &'static str,
        accept: impl Fn(u8) -> bool,
    ) -> Result<u8, DecodeError> {
        let at = self.pos;
        let found = self.u8(field)?;
        if accept(found) {
            Ok(found)
        } else {
            Err(DecodeError::UnexpectedByte {
                kind: self.kind,
                field,
                offset: at,
                expected,
                found,
            })
        }
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                kind: self.kind,
                offset: self.pos,
                count,
            }),
        }
    }
}
