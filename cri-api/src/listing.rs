//! `ListContainersResponse` and `ListPodSandboxResponse`, written by hand so a server can
//! send containers it encoded once, and whole answers it kept.
//!
//! kubelet lists every container every second. At a thousand containers, building and
//! encoding a thousand `Container` messages per call is most of what the call costs, yet all
//! of a container but its state is fixed when it is created. A server keeps each container
//! encoded without its state ([`EncodedContainer::body`]) and sends, per call, that body
//! plus the current state. On the wire this is the same `repeated Container containers = 1`:
//! a protobuf decoder accepts fields in any order, so the state written after the other
//! fields decodes like any other. Decoding always fills [`ListContainersResponse::containers`].

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use crate::v1::{Container, PodSandbox};

/// `Container.state`'s field number.
const STATE_FIELD: u32 = 6;
/// `ListContainersResponse.containers`' field number.
const CONTAINERS_FIELD: u32 = 1;

/// A container encoded once, without its state.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct EncodedContainer {
    /// The encoded `Container` with `state` left at its default.
    pub body: Bytes,
    /// The `ContainerState` to send with it.
    pub state: i32,
}

impl EncodedContainer {
    /// Encode `container` for later lists; its `state` is not part of the body.
    pub fn new(container: &Container) -> Self {
        let state = container.state;
        let mut stateless = container.clone();
        stateless.state = 0;
        EncodedContainer {
            body: Bytes::from(prost::Message::encode_to_vec(&stateless)),
            state,
        }
    }

    /// The same body with another state.
    pub fn with_state(&self, state: i32) -> Self {
        EncodedContainer {
            body: self.body.clone(),
            state,
        }
    }

    fn state_len(&self) -> usize {
        if self.state == 0 {
            0
        } else {
            encoding::int32::encoded_len(STATE_FIELD, &self.state)
        }
    }

    fn message_len(&self) -> usize {
        self.body.len() + self.state_len()
    }
}

/// `runtime.v1.ListContainersResponse`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ListContainersResponse {
    /// A list of containers.
    pub containers: Vec<Container>,
    /// More containers, already encoded; sent after `containers`. Always empty after decoding.
    pub encoded: Vec<EncodedContainer>,
    /// More containers as the bytes of an encoded `ListContainersResponse` (see
    /// [`ListContainersResponse::to_bytes`]), e.g. a whole answer kept from an earlier call;
    /// sent last. Always empty after decoding.
    pub raw: Bytes,
}

impl ListContainersResponse {
    /// This answer encoded, for [`ListContainersResponse::raw`] of later ones.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(prost::Message::encode_to_vec(self))
    }
}

impl prost::Message for ListContainersResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        for container in &self.containers {
            encoding::message::encode(CONTAINERS_FIELD, container, buf);
        }
        for entry in &self.encoded {
            encoding::encode_key(CONTAINERS_FIELD, WireType::LengthDelimited, buf);
            encoding::encode_varint(entry.message_len() as u64, buf);
            buf.put_slice(&entry.body);
            if entry.state != 0 {
                encoding::int32::encode(STATE_FIELD, &entry.state, buf);
            }
        }
        buf.put_slice(&self.raw);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        merge_list(
            &mut self.containers,
            ("ListContainersResponse", "containers"),
            tag,
            wire_type,
            buf,
            ctx,
        )
    }

    fn encoded_len(&self) -> usize {
        let decoded = encoding::message::encoded_len_repeated(CONTAINERS_FIELD, &self.containers);
        let key = encoding::key_len(CONTAINERS_FIELD);
        let encoded: usize = self
            .encoded
            .iter()
            .map(|entry| {
                let len = entry.message_len();
                key + encoding::encoded_len_varint(len as u64) + len
            })
            .sum();
        decoded + encoded + self.raw.len()
    }

    fn clear(&mut self) {
        self.containers.clear();
        self.encoded.clear();
        self.raw.clear();
    }
}

/// Decode one field of a list answer: field 1 is its repeated list, `names` its message and
/// field name (for errors); any other field is skipped.
fn merge_list<M: prost::Message + Default>(
    list: &mut Vec<M>,
    names: (&'static str, &'static str),
    tag: u32,
    wire_type: WireType,
    buf: &mut impl Buf,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if tag == CONTAINERS_FIELD {
        encoding::message::merge_repeated(wire_type, list, buf, ctx).map_err(|mut error| {
            error.push(names.0, names.1);
            error
        })
    } else {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }
}

/// `runtime.v1.ListPodSandboxResponse`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ListPodSandboxResponse {
    /// List of PodSandboxes.
    pub items: Vec<PodSandbox>,
    /// More sandboxes as the bytes of an encoded `ListPodSandboxResponse` (see
    /// [`ListPodSandboxResponse::to_bytes`]), e.g. a whole answer kept from an earlier call;
    /// sent last. Always empty after decoding.
    pub raw: Bytes,
}

impl ListPodSandboxResponse {
    /// This answer encoded, for [`ListPodSandboxResponse::raw`] of later ones.
    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(prost::Message::encode_to_vec(self))
    }
}

impl prost::Message for ListPodSandboxResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        encoding::message::encode_repeated(CONTAINERS_FIELD, &self.items, buf);
        buf.put_slice(&self.raw);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        merge_list(
            &mut self.items,
            ("ListPodSandboxResponse", "items"),
            tag,
            wire_type,
            buf,
            ctx,
        )
    }

    fn encoded_len(&self) -> usize {
        encoding::message::encoded_len_repeated(CONTAINERS_FIELD, &self.items) + self.raw.len()
    }

    fn clear(&mut self) {
        self.items.clear();
        self.raw.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ContainerMetadata, ImageSpec};
    use prost::Message;

    fn container(i: u32, state: i32) -> Container {
        Container {
            id: format!("{i:064x}"),
            pod_sandbox_id: format!("{:064x}", i / 10),
            metadata: Some(ContainerMetadata {
                name: format!("c{i}"),
                attempt: i,
            }),
            image: Some(ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            image_ref: "sha256:aa".into(),
            state,
            created_at: 1_700_000_000 + i64::from(i),
            labels: [("k".to_string(), format!("v{i}"))].into(),
            annotations: [("a".to_string(), "b".to_string())].into(),
            image_id: "sha256:bb".into(),
        }
    }

    #[test]
    fn encoded_entries_decode_like_plain_ones_whatever_their_state() {
        let all: Vec<Container> = (0..8).map(|i| container(i, (i % 4) as i32)).collect();
        let plain = ListContainersResponse {
            containers: all.clone(),
            ..Default::default()
        };
        // A quarter plain, half pre-encoded (encoded in another state, then re-stated), a
        // quarter as the bytes of an earlier answer.
        let earlier = ListContainersResponse {
            containers: all[6..].to_vec(),
            ..Default::default()
        };
        let mixed = ListContainersResponse {
            containers: all[..2].to_vec(),
            encoded: all[2..6]
                .iter()
                .map(|c| {
                    EncodedContainer::new(&Container {
                        state: 3,
                        ..c.clone()
                    })
                    .with_state(c.state)
                })
                .collect(),
            raw: earlier.to_bytes(),
        };
        let bytes = mixed.encode_to_vec();
        assert_eq!(bytes.len(), mixed.encoded_len());
        assert_eq!(bytes.len(), plain.encoded_len());
        let decoded = ListContainersResponse::decode(&bytes[..]).unwrap();
        assert_eq!(decoded, plain);
        assert!(decoded.encoded.is_empty());
        assert!(decoded.raw.is_empty());
    }

    #[test]
    fn a_kept_sandbox_answer_decodes_like_its_items() {
        let sandbox = |i: u32| PodSandbox {
            id: format!("{i:064x}"),
            state: (i % 2) as i32,
            created_at: i64::from(i),
            labels: [("k".to_string(), format!("v{i}"))].into(),
            ..Default::default()
        };
        let all: Vec<PodSandbox> = (0..5).map(sandbox).collect();
        let plain = ListPodSandboxResponse {
            items: all.clone(),
            ..Default::default()
        };
        let kept = ListPodSandboxResponse {
            items: all[3..].to_vec(),
            ..Default::default()
        }
        .to_bytes();
        let mixed = ListPodSandboxResponse {
            items: all[..3].to_vec(),
            raw: kept,
        };
        let bytes = mixed.encode_to_vec();
        assert_eq!(bytes.len(), mixed.encoded_len());
        assert_eq!(bytes, plain.encode_to_vec());
        let decoded = ListPodSandboxResponse::decode(&bytes[..]).unwrap();
        assert_eq!(decoded, plain);
        assert!(decoded.raw.is_empty());
    }
}
