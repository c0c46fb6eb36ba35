//! A protobuf wire-format reader over a byte slice: fields as `(tag, value)`, no schema.
//!
//! Offsets in errors are absolute positions in the request body (the reader of a nested
//! message carries its start offset), so a client can find the byte that broke decoding.

use crate::ProtobufError;

/// One field's payload, still undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// Length-delimited: strings, bytes, messages, packed repeated scalars. `offset` is where
    /// `data` starts in the body.
    Bytes {
        data: &'a [u8],
        offset: usize,
    },
}

impl WireValue<'_> {
    pub(crate) fn wire_type_name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "64-bit",
            WireValue::Fixed32(_) => "32-bit",
            WireValue::Bytes { .. } => "length-delimited",
        }
    }
}

/// Reads the fields of one message in order.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute offset of `buf[0]` in the body.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn read_varint(&mut self) -> Result<u64, ProtobufError> {
        let start = self.offset();
        let mut value: u64 = 0;
        // A u64 takes at most 10 groups of 7 bits.
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(ProtobufError::TruncatedVarint { offset: start });
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintTooLong { offset: start })
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ProtobufError> {
        let start = self.offset();
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or(ProtobufError::Truncated {
                what,
                offset: start,
                needed: len,
                available: self.buf.len() - self.pos,
            })?;
        let data = &self.buf[self.pos..end];
        self.pos = end;
        Ok(data)
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn read_fixed64(&mut self) -> Result<u64, ProtobufError> {
        let bytes = self.take(8, "64-bit value")?;
        Ok(u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
    }

    pub(crate) fn read_fixed32(&mut self) -> Result<u32, ProtobufError> {
        let bytes = self.take(4, "32-bit value")?;
        Ok(u32::from_le_bytes(bytes.try_into().unwrap_or([0; 4])))
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
        if self.at_end() {
            return Ok(None);
        }
        let key_offset = self.offset();
        let key = self.read_varint()?;
        let tag = key >> 3;
        if tag == 0 || tag > u64::from(u32::MAX >> 3) {
            return Err(ProtobufError::InvalidTag {
                tag,
                offset: key_offset,
            });
        }
        let tag = tag as u32;
        let value = match key & 7 {
            0 => WireValue::Varint(self.read_varint()?),
            1 => WireValue::Fixed64(self.read_fixed64()?),
            2 => {
                let len_offset = self.offset();
                let len = self.read_varint()?;
                let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated {
                    what: "length-delimited field",
                    offset: len_offset,
                    needed: usize::MAX,
                    available: self.buf.len() - self.pos,
                })?;
                let offset = self.offset();
                let data = self.take(len, "length-delimited field")?;
                WireValue::Bytes { data, offset }
            }
            5 => WireValue::Fixed32(self.read_fixed32()?),
            // 3 and 4 are proto2 groups, which no Kubernetes message uses; 6 and 7 do not exist.
            wire_type => {
                return Err(ProtobufError::UnsupportedWireType {
                    wire_type: wire_type as u8,
                    offset: key_offset,
                })
            }
        };
        Ok(Some((tag, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, ProtobufError> {
        let mut reader = Reader::new(buf, 100);
        let mut out = Vec::new();
        while let Some(field) = reader.next_field()? {
            out.push(field);
        }
        Ok(out)
    }

    #[test]
    fn reads_each_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        let got = fields(&buf).unwrap();
        assert_eq!(
            got,
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (
                    3,
                    WireValue::Bytes {
                        data: b"hi",
                        offset: 114
                    }
                ),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[0x08, 0x96], "truncated varint at byte 101"),
            (&[0x80], "truncated varint at byte 100"),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                "varint longer than 10 bytes at byte 101",
            ),
            (
                &[0x1a, 0x05, b'h'],
                "truncated length-delimited field at byte 102: needs 5 bytes, 1 left",
            ),
            (
                &[0x11, 1, 2],
                "truncated 64-bit value at byte 101: needs 8 bytes, 2 left",
            ),
            (
                &[0x25, 1],
                "truncated 32-bit value at byte 101: needs 4 bytes, 1 left",
            ),
            (&[0x00], "invalid field number 0 at byte 100"),
            (&[0x0b], "unsupported wire type 3 at byte 100"),
            (&[0x0f], "unsupported wire type 7 at byte 100"),
        ];
        for (input, want) in cases {
            let err = fields(input).unwrap_err();
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
    }
}
