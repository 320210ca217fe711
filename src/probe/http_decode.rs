//! Response decompression for the `http` probe (`accept_encoding`): gzip and deflate,
//! decoded as the body arrives into a sink that counts, so `max_body_bytes` bounds the
//! decoded body. A small body that expands past it (a decompression bomb) fails the probe
//! after at most the limit plus the decoder's window in memory.

use std::io::Write;

use flate2::write::{GzDecoder, ZlibDecoder};
use serde::Deserialize;

/// An encoding the probe can ask for and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gzip,
    Deflate,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body larger than max_body_bytes ({0})")]
    TooLarge(u64),
    #[error("corrupt {encoding} body: {error}")]
    Corrupt {
        encoding: &'static str,
        error: std::io::Error,
    },
}

/// The sink's refusal, told apart from a corrupt stream inside flate2's `io::Error`.
#[derive(Debug, thiserror::Error)]
#[error("decoded body over the limit")]
struct OverLimit;

fn over_limit(error: &std::io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<OverLimit>())
}

/// Where decoded bytes go: kept when a check needs them, counted always.
struct Sink {
    kept: Option<Vec<u8>>,
    written: u64,
    limit: u64,
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            return Err(std::io::Error::other(OverLimit));
        }
        if let Some(kept) = &mut self.kept {
            kept.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Gzip(GzDecoder<Sink>),
    Deflate(ZlibDecoder<Sink>),
}

/// A streaming decoder bounded by `limit` decoded bytes.
pub struct Decoder {
    encoding: Encoding,
    limit: u64,
    inner: Inner,
}

impl Decoder {
    pub fn new(encoding: Encoding, limit: u64, keep: bool) -> Self {
        let sink = Sink {
            kept: keep.then(Vec::new),
            written: 0,
            limit,
        };
        let inner = match encoding {
            Encoding::Gzip => Inner::Gzip(GzDecoder::new(sink)),
            Encoding::Deflate => Inner::Deflate(ZlibDecoder::new(sink)),
        };
        Self {
            encoding,
            limit,
            inner,
        }
    }

    fn error(encoding: Encoding, limit: u64, error: std::io::Error) -> DecodeError {
        if over_limit(&error) {
            DecodeError::TooLarge(limit)
        } else {
            DecodeError::Corrupt {
                encoding: encoding.as_str(),
                error,
            }
        }
    }

    /// Feeds a chunk of the encoded body.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        let result = match &mut self.inner {
            Inner::Gzip(d) => d.write_all(chunk),
            Inner::Deflate(d) => d.write_all(chunk),
        };
        result.map_err(|e| Self::error(self.encoding, self.limit, e))
    }

    /// Ends the body (checking the gzip trailer); the decoded body, if kept.
    pub fn finish(self) -> Result<Vec<u8>, DecodeError> {
        let finished = match self.inner {
            Inner::Gzip(d) => d.finish(),
            Inner::Deflate(d) => d.finish(),
        };
        finished
            .map(|sink| sink.kept.unwrap_or_default())
            .map_err(|e| Self::error(self.encoding, self.limit, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_in_chunks_and_bounds_the_decoded_size() {
        let body = b"status=ready\n".repeat(100);
        let encoded = gzip(&body);
        let mut d = Decoder::new(Encoding::Gzip, 10_000, true);
        for chunk in encoded.chunks(7) {
            d.write(chunk).unwrap();
        }
        assert_eq!(d.finish().unwrap(), body);

        let bomb = gzip(&vec![0u8; 10 * 1024 * 1024]);
        assert!(bomb.len() < 20 * 1024, "{} bytes", bomb.len());
        let mut d = Decoder::new(Encoding::Gzip, 1024 * 1024, false);
        assert!(matches!(d.write(&bomb), Err(DecodeError::TooLarge(_))));

        let mut d = Decoder::new(Encoding::Gzip, 10_000, false);
        let truncated = &encoded[..encoded.len() - 4];
        let result = d.write(truncated).and_then(|()| d.finish().map(drop));
        assert!(
            matches!(result, Err(DecodeError::Corrupt { .. })),
            "{result:?}"
        );
    }
}
