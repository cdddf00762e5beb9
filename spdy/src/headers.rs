//! Name/value header blocks (draft 3.1, section 2.6.10) and their compression.
//!
//! A block is a 32-bit count, then per name a 32-bit length and the lowercase name, a 32-bit
//! length and the value; several values of one name travel as one value joined with NUL.
//! Every block a side sends is compressed by ONE zlib stream for the whole connection
//! (preset with the SPDY/3 dictionary, each block ended by a sync flush), and decompressed
//! by one matching stream on the other side: blocks must be encoded and decoded in wire order.

use bytes::{BufMut, Bytes};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A decompressed header block larger than this is refused.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// A header block with more names than this is refused.
pub const MAX_HEADERS: usize = 1024;

/// The zlib preset dictionary of SPDY/3 (section 2.6.10.1): length-prefixed words, then raw
/// text. 1423 bytes; its Adler-32 (the dictionary id in every first block) is 0xe3c6a7c2.
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options",
            "head",
            "post",
            "put",
            "delete",
            "trace",
            "accept",
            "accept-charset",
            "accept-encoding",
            "accept-language",
            "accept-ranges",
            "age",
            "allow",
            "authorization",
            "cache-control",
            "connection",
            "content-base",
            "content-encoding",
            "content-language",
            "content-length",
            "content-location",
            "content-md5",
            "content-range",
            "content-type",
            "date",
            "etag",
            "expect",
            "expires",
            "from",
            "host",
            "if-match",
            "if-modified-since",
            "if-none-match",
            "if-range",
            "if-unmodified-since",
            "last-modified",
            "location",
            "max-forwards",
            "pragma",
            "proxy-authenticate",
            "proxy-authorization",
            "range",
            "referer",
            "retry-after",
            "server",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "user-agent",
            "vary",
            "via",
            "warning",
            "www-authenticate",
            "method",
            "get",
            "status",
            "200 OK",
            "version",
            "HTTP/1.1",
            "url",
            "public",
            "set-cookie",
            "keep-alive",
            "origin",
        ];
        const TAIL: &[&str] = &[
            "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
            "502504505",
            "203 Non-Authoritative Information204 No Content301 Moved Permanently",
            "400 Bad Request401 Unauthorized403 Forbidden404 Not Found",
            "500 Internal Server Error501 Not Implemented503 Service Unavailable",
            "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
            "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
            "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
            "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
            "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
        ];
        let mut bytes = Vec::with_capacity(1423);
        for word in WORDS {
            bytes.extend_from_slice(&(word.len() as u32).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        for part in TAIL {
            bytes.extend_from_slice(part.as_bytes());
        }
        bytes
    })
}

/// Why a header block could not be encoded or decoded. A decode error ends the connection:
/// the zlib context is no longer shared with the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("zlib: {0}")]
    Zlib(String),
    #[error("the decompressed header block exceeds {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("the header block holds {0} names; at most {MAX_HEADERS} are accepted")]
    TooMany(u64),
    #[error("the header block ends early")]
    Truncated,
    #[error("{0} bytes follow the last header")]
    TrailingBytes(usize),
    #[error("a header name is empty")]
    EmptyName,
    #[error("header {0:?} appears twice")]
    Duplicate(String),
    #[error("a header name or value is not UTF-8")]
    NotUtf8,
    #[error("the peer ended its compression stream")]
    StreamEnded,
}

/// The headers of a stream: names are lowercase (as on the wire), each may repeat; the
/// order of first appearance is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Adds a value (the name is lowercased). A value holding NUL reads back as several.
    pub fn add(&mut self, name: impl AsRef<str>, value: impl Into<String>) {
        self.entries
            .push((name.as_ref().to_ascii_lowercase(), value.into()));
    }

    /// `add`, as a builder.
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<String>) -> Self {
        self.add(name, value);
        self
    }

    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (any case), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The uncompressed block: distinct names in order of first appearance, values joined
    /// with NUL.
    pub fn to_block(&self) -> Result<Vec<u8>, HeaderError> {
        let mut names: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in &self.entries {
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            match names.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => names.push((name, vec![value])),
            }
        }
        let mut block = Vec::new();
        put_len(&mut block, names.len())?;
        for (name, values) in names {
            put_len(&mut block, name.len())?;
            block.extend_from_slice(name.as_bytes());
            let joined = values.join("\0");
            put_len(&mut block, joined.len())?;
            block.extend_from_slice(joined.as_bytes());
        }
        Ok(block)
    }

    /// Parses an uncompressed block.
    pub fn from_block(mut block: &[u8]) -> Result<Headers, HeaderError> {
        let count = u64::from(take_u32(&mut block)?);
        if count > MAX_HEADERS as u64 {
            return Err(HeaderError::TooMany(count));
        }
        let mut headers = Headers::new();
        let mut seen: Vec<String> = Vec::new();
        for _ in 0..count {
            let name = take_str(&mut block)?;
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            let name = name.to_ascii_lowercase();
            if seen.contains(&name) {
                return Err(HeaderError::Duplicate(name));
            }
            let value = take_str(&mut block)?;
            for part in value.split('\0') {
                headers.entries.push((name.clone(), part.to_owned()));
            }
            seen.push(name);
        }
        if !block.is_empty() {
            return Err(HeaderError::TrailingBytes(block.len()));
        }
        Ok(headers)
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.add(name, value);
        }
        headers
    }
}

fn put_len(block: &mut Vec<u8>, len: usize) -> Result<(), HeaderError> {
    let len = u32::try_from(len).map_err(|_| HeaderError::TooLarge)?;
    block.put_u32(len);
    Ok(())
}

fn take_u32(block: &mut &[u8]) -> Result<u32, HeaderError> {
    let Some((head, rest)) = block.split_first_chunk::<4>() else {
        return Err(HeaderError::Truncated);
    };
    *block = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_str<'a>(block: &mut &'a [u8]) -> Result<&'a str, HeaderError> {
    let len = take_u32(block)? as usize;
    if block.len() < len {
        return Err(HeaderError::Truncated);
    }
    let (bytes, rest) = block.split_at(len);
    *block = rest;
    std::str::from_utf8(bytes).map_err(|_| HeaderError::NotUtf8)
}

/// The compressing side of one connection direction.
pub struct HeaderEncoder {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderEncoder")
            .field("total_out", &self.zlib.total_out())
            .finish()
    }
}

impl HeaderEncoder {
    pub fn new() -> Result<Self, HeaderError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(dictionary())
            .map_err(|e| HeaderError::Zlib(e.to_string()))?;
        Ok(HeaderEncoder { zlib })
    }

    /// The compressed block of `headers`, ended by a sync flush so that the peer can decode
    /// it without the blocks that follow.
    pub fn encode(&mut self, headers: &Headers) -> Result<Bytes, HeaderError> {
        let raw = headers.to_block()?;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let start = self.zlib.total_in();
        loop {
            let consumed = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            let input = raw.get(consumed..).ok_or(HeaderError::TooLarge)?;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.zlib
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            let consumed = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            // The flush is complete once all input is taken and zlib left output space unused.
            if consumed >= raw.len() && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
    }
}

/// The decompressing side of one connection direction.
pub struct HeaderDecoder {
    zlib: Decompress,
}

impl std::fmt::Debug for HeaderDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecoder")
            .field("total_in", &self.zlib.total_in())
            .finish()
    }
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder::new()
    }
}

impl HeaderDecoder {
    pub fn new() -> Self {
        HeaderDecoder {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses and parses the next block from the peer.
    pub fn decode(&mut self, compressed: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.decompress(compressed)?;
        Headers::from_block(&raw)
    }

    fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, HeaderError> {
        const CHUNK: usize = 4096;
        let mut out: Vec<u8> = Vec::with_capacity(CHUNK);
        let start = self.zlib.total_in();
        loop {
            let consumed = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            let input = compressed.get(consumed..).ok_or(HeaderError::Truncated)?;
            if out.len() == out.capacity() {
                if out.len() > MAX_HEADER_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve(CHUNK);
            }
            let before_out = out.len();
            let status = match self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(status) => status,
                // The first block names the preset dictionary (zlib's Z_NEED_DICT): supply it
                // and go on with the rest of the input.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(dictionary())
                        .map_err(|e| HeaderError::Zlib(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            };
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            let consumed_now = usize::try_from(self.zlib.total_in() - start).unwrap_or(usize::MAX);
            let all_input = consumed_now >= compressed.len();
            if status == Status::StreamEnd && !all_input {
                return Err(HeaderError::StreamEnded);
            }
            if all_input && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed_now == consumed && out.len() == before_out && out.len() < out.capacity() {
                // zlib made no progress with input and room: the block is cut short.
                return Err(HeaderError::Truncated);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in data {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_one_of_the_spec() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(adler32(dictionary), 0xe3c6_a7c2);
        assert!(dictionary.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
        assert!(dictionary.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn the_first_block_names_the_dictionary_in_its_zlib_header() {
        let mut encoder = HeaderEncoder::new().unwrap();
        let block = encoder
            .encode(&Headers::new().with("streamtype", "error"))
            .unwrap();
        // CMF: deflate with a 32 KiB window; FLG has FDICT; then the dictionary id.
        assert_eq!(block[0], 0x78);
        assert_ne!(block[1] & 0x20, 0, "FDICT not set");
        assert_eq!(u16::from_be_bytes([block[0], block[1]]) % 31, 0);
        assert_eq!(&block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        // A sync flush ends every block.
        assert!(block.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    #[test]
    fn blocks_decode_in_order_through_one_context() {
        let mut encoder = HeaderEncoder::new().unwrap();
        let mut decoder = HeaderDecoder::new();
        let sets = [
            Headers::new()
                .with("streamtype", "error")
                .with("X-Extra", "a")
                .with("x-extra", "b"),
            Headers::new(),
            Headers::new()
                .with("streamtype", "stdout")
                .with("port", "8080"),
            Headers::new()
                .with("streamtype", "stdout")
                .with("port", "8080"),
        ];
        let blocks: Vec<Bytes> = sets.iter().map(|h| encoder.encode(h).unwrap()).collect();
        // The context carries over: a repeated set compresses to far fewer bytes.
        assert!(blocks[3].len() < blocks[2].len());
        for (headers, block) in sets.iter().zip(&blocks) {
            assert_eq!(&decoder.decode(block).unwrap(), headers);
        }
        assert_eq!(sets[0].get_all("x-extra").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(sets[0].get("X-EXTRA"), Some("a"));
    }

    #[test]
    fn a_block_from_an_independent_zlib_with_the_dictionary_decodes() {
        // What a Go peer sends: zlib at best compression (FLEVEL 3, so FLG differs from
        // ours) with the preset dictionary; the decoder must not care.
        let raw = Headers::new()
            .with("streamtype", "data")
            .to_block()
            .unwrap();
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(dictionary()).unwrap();
        let mut out = Vec::with_capacity(256);
        zlib.compress_vec(&raw, &mut out, FlushCompress::Sync)
            .unwrap();
        assert_eq!(&out[..2], &[0x78, 0xf9]);
        let headers = HeaderDecoder::new().decode(&out).unwrap();
        assert_eq!(headers.get("streamtype"), Some("data"));
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert_eq!(Headers::from_block(&[0, 0]), Err(HeaderError::Truncated));
        assert_eq!(
            Headers::from_block(&[0, 0, 0x04, 0x01]),
            Err(HeaderError::TooMany(1025))
        );
        assert_eq!(
            Headers::from_block(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::EmptyName)
        );
        assert_eq!(
            Headers::from_block(&[0, 0, 0, 1, 0, 0, 0, 1, b'a', 0, 0, 0, 5, b'x']),
            Err(HeaderError::Truncated)
        );
        assert_eq!(
            Headers::from_block(&[0, 0, 0, 0, 9]),
            Err(HeaderError::TrailingBytes(1))
        );
        let twice = [
            0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
        ];
        assert_eq!(
            Headers::from_block(&twice),
            Err(HeaderError::Duplicate("a".into()))
        );
        assert!(HeaderDecoder::new().decode(b"not zlib at all").is_err());
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        // 1 MiB of one value compresses to about a kilobyte.
        let huge = Headers::new().with("x", "a".repeat(1 << 20));
        let mut encoder = HeaderEncoder::new().unwrap();
        let block = encoder.encode(&huge).unwrap();
        assert!(block.len() < 8192);
        assert_eq!(
            HeaderDecoder::new().decode(&block),
            Err(HeaderError::TooLarge)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_headers_round_trip(
            pairs in proptest::collection::vec(("[a-z0-9-]{1,12}", "[ -~]{0,40}"), 0..20)
        ) {
            let headers: Headers = pairs.into_iter().collect();
            let mut encoder = HeaderEncoder::new().unwrap();
            let mut decoder = HeaderDecoder::new();
            for _ in 0..2 {
                let block = encoder.encode(&headers).unwrap();
                let decoded = decoder.decode(&block).unwrap();
                // Values of one name are grouped together on the wire.
                for (name, _) in headers.iter() {
                    prop_assert_eq!(
                        decoded.get_all(name).collect::<Vec<_>>(),
                        headers.get_all(name).collect::<Vec<_>>()
                    );
                }
                prop_assert_eq!(decoded.len(), headers.len());
            }
        }

        #[test]
        fn arbitrary_compressed_input_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut decoder = HeaderDecoder::new();
            let _ = decoder.decode(&bytes);
            let _ = decoder.decode(&bytes);
        }
    }
}
