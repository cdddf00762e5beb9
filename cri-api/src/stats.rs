//! `ListContainerStatsResponse` written straight from a server's own records.
//!
//! kubelet asks for the stats of every container every ten seconds. Building that answer as
//! `ContainerStats` messages first copies each container's labels and annotations into fresh
//! hash maps, only for the encoder to read them once and drop them: on a node with 1000
//! kubelet-labelled containers, about a megabyte of maps per call, and as much again in the
//! encoder's growing buffer. Here the same bytes are written from borrowed attributes, in
//! pieces whose lengths are known before they are written ([`encoded_len`], [`encode`]), so
//! a server can size its buffers exactly, send the answer's length first and encode the rest
//! as it goes. The answer decodes as the generated
//! `ListContainerStatsResponse`.

use std::collections::BTreeMap;

use prost::bytes::BufMut;
use prost::encoding::{self, WireType};
use prost::Message;

use crate::v1::ContainerStats;

/// `ListContainerStatsResponse.stats`, `ContainerStats.attributes`.
const FIRST_FIELD: u32 = 1;
/// `ContainerAttributes`' and `ContainerMetadata`'s fields.
const ID: u32 = 1;
const METADATA: u32 = 2;
const LABELS: u32 = 3;
const ANNOTATIONS: u32 = 4;
const NAME: u32 = 1;
const ATTEMPT: u32 = 2;

/// A container's `ContainerAttributes`, borrowed from where the server keeps them.
#[derive(Clone, Copy, Debug)]
pub struct AttributesRef<'a> {
    pub id: &'a str,
    /// `ContainerMetadata`.
    pub name: &'a str,
    pub attempt: u32,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
}

impl AttributesRef<'_> {
    fn metadata_len(&self) -> usize {
        string_len(NAME, self.name)
            + if self.attempt == 0 {
                0
            } else {
                encoding::uint32::encoded_len(ATTEMPT, &self.attempt)
            }
    }

    /// The encoded `ContainerAttributes`' length, without key or length prefix.
    fn encoded_len(&self) -> usize {
        let metadata = self.metadata_len();
        string_len(ID, self.id)
            + encoding::key_len(METADATA)
            + encoding::encoded_len_varint(metadata as u64)
            + metadata
            + map_len(LABELS, self.labels)
            + map_len(ANNOTATIONS, self.annotations)
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        if !self.id.is_empty() {
            put_string(ID, self.id, buf);
        }
        encoding::encode_key(METADATA, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.metadata_len() as u64, buf);
        if !self.name.is_empty() {
            put_string(NAME, self.name, buf);
        }
        if self.attempt != 0 {
            encoding::uint32::encode(ATTEMPT, &self.attempt, buf);
        }
        encode_map(LABELS, self.labels, buf);
        encode_map(ANNOTATIONS, self.annotations, buf);
    }
}

/// One entry of the answer: a container's attributes, borrowed, and the rest of its
/// `ContainerStats`.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    attributes: AttributesRef<'a>,
    /// Never has `attributes`: those are written from [`Entry::attributes`].
    usage: ContainerStats,
}

impl<'a> Entry<'a> {
    /// The entry of a container with these attributes and usage; any `attributes` set in
    /// `usage` are dropped.
    pub fn new(attributes: AttributesRef<'a>, mut usage: ContainerStats) -> Self {
        usage.attributes = None;
        Entry { attributes, usage }
    }

    /// The encoded `ContainerStats`' length, without key or length prefix, for attributes of
    /// `attributes` bytes.
    fn body_len(&self, attributes: usize) -> usize {
        encoding::key_len(FIRST_FIELD)
            + encoding::encoded_len_varint(attributes as u64)
            + attributes
            + self.usage.encoded_len()
    }

    /// The bytes this entry adds to the answer.
    fn encoded_len(&self) -> usize {
        let body = self.body_len(self.attributes.encoded_len());
        encoding::key_len(FIRST_FIELD) + encoding::encoded_len_varint(body as u64) + body
    }

    fn encode(&self, buf: &mut impl BufMut) {
        let attributes = self.attributes.encoded_len();
        encoding::encode_key(FIRST_FIELD, WireType::LengthDelimited, buf);
        encoding::encode_varint(self.body_len(attributes) as u64, buf);
        encoding::encode_key(FIRST_FIELD, WireType::LengthDelimited, buf);
        encoding::encode_varint(attributes as u64, buf);
        self.attributes.encode_raw(buf);
        self.usage.encode_raw(buf);
    }
}

/// How many bytes `entries` take in a `ListContainerStatsResponse`.
pub fn encoded_len<'a>(entries: impl IntoIterator<Item = Entry<'a>>) -> usize {
    entries.into_iter().map(|entry| entry.encoded_len()).sum()
}

/// Append `entries` to an encoded `ListContainerStatsResponse`: any run of entries, in any
/// number of pieces, concatenates to a valid answer ([`encoded_len`] bytes per piece).
pub fn encode<'a>(entries: impl IntoIterator<Item = Entry<'a>>, buf: &mut impl BufMut) {
    for entry in entries {
        entry.encode(buf);
    }
}

fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        encoding::key_len(tag) + encoding::encoded_len_varint(value.len() as u64) + value.len()
    }
}

/// A string field, always written (map entries write empty keys and values too).
fn put_string(tag: u32, value: &str, buf: &mut impl BufMut) {
    encoding::encode_key(tag, WireType::LengthDelimited, buf);
    encoding::encode_varint(value.len() as u64, buf);
    buf.put_slice(value.as_bytes());
}

/// A map entry message's length: key (field 1) and value (field 2), each left out when
/// empty, as prost writes them.
fn map_entry_len(key: &str, value: &str) -> usize {
    string_len(1, key) + string_len(2, value)
}

fn map_len(tag: u32, map: &BTreeMap<String, String>) -> usize {
    map.iter()
        .map(|(key, value)| {
            let entry = map_entry_len(key, value);
            encoding::key_len(tag) + encoding::encoded_len_varint(entry as u64) + entry
        })
        .sum()
}

fn encode_map(tag: u32, map: &BTreeMap<String, String>, buf: &mut impl BufMut) {
    for (key, value) in map {
        encoding::encode_key(tag, WireType::LengthDelimited, buf);
        encoding::encode_varint(map_entry_len(key, value) as u64, buf);
        if !key.is_empty() {
            put_string(1, key, buf);
        }
        if !value.is_empty() {
            put_string(2, value, buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{
        ContainerAttributes, ContainerMetadata, CpuUsage, FilesystemIdentifier, FilesystemUsage,
        ListContainerStatsResponse, MemoryUsage, UInt64Value,
    };

    /// The whole answer of the entries `entries()` yields, sized first, then written.
    fn encode_list<'a, I>(entries: impl Fn() -> I) -> Vec<u8>
    where
        I: Iterator<Item = Entry<'a>>,
    {
        let len = encoded_len(entries());
        let mut buf = Vec::with_capacity(len);
        encode(entries(), &mut buf);
        assert_eq!(buf.len(), len);
        buf
    }

    struct Record {
        id: String,
        name: String,
        attempt: u32,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        running: bool,
    }

    fn record(i: u32) -> Record {
        Record {
            id: if i == 3 {
                String::new()
            } else {
                format!("{i:064x}")
            },
            name: if i == 2 {
                String::new()
            } else {
                format!("c{i}")
            },
            attempt: i % 3,
            labels: (0..i % 4)
                .map(|k| (format!("io.kubernetes.label-{k}"), format!("v{i}")))
                .chain((i == 5).then(|| (String::new(), "empty key".into())))
                .collect(),
            annotations: (0..i % 3)
                .map(|k| (format!("annotation-{k}"), String::new()))
                .collect(),
            running: i.is_multiple_of(2),
        }
    }

    fn usage(r: &Record) -> ContainerStats {
        let value = |value| Some(UInt64Value { value });
        ContainerStats {
            attributes: None,
            cpu: r.running.then(|| CpuUsage {
                timestamp: 7,
                usage_core_nano_seconds: value(123_456),
                usage_nano_cores: None,
                psi: None,
            }),
            memory: r.running.then(|| MemoryUsage {
                timestamp: 7,
                working_set_bytes: value(4096),
                usage_bytes: value(8192),
                ..Default::default()
            }),
            writable_layer: Some(FilesystemUsage {
                timestamp: 8,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: "/var/lib/containerd/snapshots".into(),
                }),
                used_bytes: value(u64::from(r.attempt) * 1000),
                inodes_used: None,
            }),
            swap: None,
            io: None,
        }
    }

    fn attributes(r: &Record) -> AttributesRef<'_> {
        AttributesRef {
            id: &r.id,
            name: &r.name,
            attempt: r.attempt,
            labels: &r.labels,
            annotations: &r.annotations,
        }
    }

    fn entry(r: &Record) -> Entry<'_> {
        Entry::new(attributes(r), usage(r))
    }

    fn plain(r: &Record) -> ContainerStats {
        ContainerStats {
            attributes: Some(ContainerAttributes {
                id: r.id.clone(),
                metadata: Some(ContainerMetadata {
                    name: r.name.clone(),
                    attempt: r.attempt,
                }),
                labels: r.labels.clone().into_iter().collect(),
                annotations: r.annotations.clone().into_iter().collect(),
            }),
            ..usage(r)
        }
    }

    #[test]
    fn the_written_answer_decodes_like_the_generated_one() {
        let records: Vec<Record> = (0..9).map(record).collect();
        let bytes = encode_list(|| records.iter().map(entry));
        let expected = ListContainerStatsResponse {
            stats: records.iter().map(plain).collect(),
        };
        assert_eq!(bytes.len(), expected.encoded_len());
        assert_eq!(
            ListContainerStatsResponse::decode(&bytes[..]).unwrap(),
            expected
        );
    }

    #[test]
    fn a_single_entry_matches_prost_byte_for_byte() {
        // At most one label and one annotation, so the maps' order cannot differ.
        let mut r = record(1);
        r.annotations = [("a".to_string(), "b".to_string())].into();
        let bytes = encode_list(|| std::iter::once(entry(&r)));
        let expected = ListContainerStatsResponse {
            stats: vec![plain(&r)],
        };
        assert_eq!(bytes, expected.encode_to_vec());
    }

    #[test]
    fn attributes_set_in_the_usage_are_not_written_twice() {
        let r = record(4);
        let with = ContainerStats {
            attributes: Some(ContainerAttributes {
                id: "ignored".into(),
                ..Default::default()
            }),
            ..usage(&r)
        };
        let bytes = encode_list(|| std::iter::once(Entry::new(attributes(&r), with.clone())));
        let decoded = ListContainerStatsResponse::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.stats, vec![plain(&r)]);
    }

    #[test]
    fn pieces_concatenate_to_the_whole_answer() {
        let records: Vec<Record> = (0..9).map(record).collect();
        let whole = encode_list(|| records.iter().map(entry));
        let mut pieces = Vec::new();
        for part in records.chunks(4) {
            let mut piece = Vec::new();
            encode(part.iter().map(entry), &mut piece);
            assert_eq!(piece.len(), encoded_len(part.iter().map(entry)));
            pieces.extend(piece);
        }
        assert_eq!(pieces, whole);
    }

    #[test]
    fn no_entries_is_an_empty_answer() {
        let bytes = encode_list(std::iter::empty::<Entry<'static>>);
        assert!(bytes.is_empty());
        assert_eq!(
            ListContainerStatsResponse::decode(&bytes[..]).unwrap(),
            ListContainerStatsResponse::default()
        );
    }
}
