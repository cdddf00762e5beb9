//! Image references: one grammar for the whole project (the shim's lookups and every
//! backend's pulls), after the distribution spec:
//! `[host[:port]/]component(/component)*[:tag][@sha256:hex]`, where a component is
//! lowercase letters and digits joined by `.`, `_` or `-`, a tag is up to 128 of
//! `[A-Za-z0-9_.-]` not starting with `.` or `-`, and a repository name (host included) is
//! at most 255 characters. A name without a host is on `docker.io`, one without a path
//! in `library/`; one without a tag or digest means `:latest` (as Docker and kubelet say).

/// The longest repository name (registry and path) the distribution spec allows.
pub const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// How the shim names an image it looks up or pulls: an image id (`sha256:…`, or 64 bare
/// hex digits, as kubelet may pass one) unchanged, any other reference in its normalised
/// spelling. Surrounding spaces are ignored.
pub fn normalize(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.starts_with("sha256:")
        || (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Ok(text.to_string());
    }
    ImageReference::parse(text).map(|r| r.normalized())
}

/// A parsed, checked image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// `docker.io`, `localhost:5000`, `registry.example`.
    pub registry: String,
    /// The path inside the registry: `library/busybox`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 lowercase hex>`.
    pub digest: Option<String>,
}

impl ImageReference {
    pub fn parse(text: &str) -> Result<ImageReference, String> {
        if text.is_empty() {
            return Err("empty image reference".into());
        }
        if text.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid reference {text:?}: it holds a space or a control character"
            ));
        }
        let (named, digest) = match text.split_once('@') {
            Some((named, digest)) => (named, Some(digest)),
            None => (text, None),
        };
        if let Some(digest) = digest {
            if !digest.starts_with("sha256:") {
                return Err(format!("digest {digest:?} is not sha256"));
            }
            if crate::oci::sha256_hex(digest).is_none() {
                return Err(format!("digest {digest:?} is not 64 lowercase hex digits"));
            }
        }
        let name = crate::oci::repository_of(named);
        let tag = (name.len() < named.len()).then(|| &named[name.len() + 1..]);
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        let host_byte =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']');
        let host_edge =
            |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'[' || b == b']');
        if !host_edge(registry.bytes().next())
            || !host_edge(registry.bytes().last())
            || !registry.bytes().all(host_byte)
        {
            return Err(format!("registry {registry:?} is not a host name"));
        }
        for component in repository.split('/') {
            let edge =
                |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let inner = |c: char| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            };
            if !edge(component.chars().next())
                || !edge(component.chars().last())
                || !component.chars().all(inner)
            {
                return Err(format!(
                    "repository component {component:?} is not lowercase letters and digits \
                     joined by '.', '_' or '-'"
                ));
            }
        }
        let full_name = registry.len() + 1 + repository.len();
        if full_name > MAX_NAME_LEN {
            return Err(format!(
                "the repository name is {full_name} characters, more than {MAX_NAME_LEN}"
            ));
        }
        if let Some(tag) = tag {
            let first_ok = tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
            if tag.len() > MAX_TAG_LEN
                || !first_ok
                || !tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            {
                return Err(format!("tag {tag:?} is not a valid tag"));
            }
        }
        Ok(ImageReference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The one spelling of this reference: `docker.io/library/busybox:latest`,
    /// `host/app:1@sha256:…`, `host/app@sha256:…` (a digest alone gets no tag).
    pub fn normalized(&self) -> String {
        let mut out = self.name();
        match (&self.tag, &self.digest) {
            (Some(tag), _) => {
                out.push(':');
                out.push_str(tag);
            }
            (None, None) => out.push_str(":latest"),
            (None, Some(_)) => {}
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::ImageReference;

    fn normalized(text: &str) -> Result<String, String> {
        ImageReference::parse(text).map(|r| r.normalized())
    }

    #[test]
    fn references_split_and_normalise_like_docker() {
        let hex = "ab".repeat(32);
        let parts = |text: &str| {
            let r = ImageReference::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            (r.registry, r.repository, r.tag, r.digest)
        };
        let own = |s: &str| s.to_string();
        assert_eq!(
            parts("127.0.0.1:5000/crius/large:1"),
            (
                own("127.0.0.1:5000"),
                own("crius/large"),
                Some(own("1")),
                None
            )
        );
        assert_eq!(
            parts(&format!("registry.example:443/app:v1@sha256:{hex}")),
            (
                own("registry.example:443"),
                own("app"),
                Some(own("v1")),
                Some(format!("sha256:{hex}"))
            )
        );
        for (given, want) in [
            ("busybox", "docker.io/library/busybox:latest".to_string()),
            ("busybox:1", "docker.io/library/busybox:1".to_string()),
            ("user/app", "docker.io/user/app:latest".to_string()),
            (
                "localhost/crius/busybox:1",
                "localhost/crius/busybox:1".to_string(),
            ),
            (
                "localhost/a/b-c/d_e.f",
                "localhost/a/b-c/d_e.f:latest".to_string(),
            ),
            (
                &format!("busybox@sha256:{hex}"),
                format!("docker.io/library/busybox@sha256:{hex}"),
            ),
        ] {
            assert_eq!(normalized(given).as_ref(), Ok(&want), "{given}");
        }
    }

    /// References on which the shim's lookup grammar and the pull's grammar used to give
    /// different answers (the shim accepted, the pull refused); the one answer now.
    #[test]
    fn the_old_grammars_disagreed_on_these_and_now_all_refuse() {
        let hex = "ab".repeat(32);
        for (reference, why) in [
            (
                "docker.io/Library/busybox:1",
                "uppercase in a path component",
            ),
            ("busybox:-x", "a tag starting with '-'"),
            ("busybox:", "an empty tag"),
            ("busybox-:1", "a component ending with '-'"),
            ("bad_host.io/x", "an underscore in the registry host"),
            (
                &format!("busybox@sha256:{}", hex.to_uppercase()),
                "an uppercase digest",
            ),
            (
                &format!("busybox:{}", "t".repeat(129)),
                "a 129-character tag",
            ),
        ] {
            assert!(
                ImageReference::parse(reference).is_err(),
                "{reference:?} ({why}) was accepted"
            );
        }
    }

    #[test]
    fn malformed_references_are_refused() {
        let hex = "ab".repeat(32);
        let longest = format!("localhost/{}", "a".repeat(245));
        assert!(normalized(&longest).is_ok());
        for bad in [
            "",
            "a//b",
            "./busybox",
            "localhost/../../etc/passwd",
            "busy\0box",
            "busybox\u{7f}",
            "busy box",
            "docker.io//busybox",
            "busybox@sha256:abc",
            &format!("busybox@md5:{hex}"),
            &format!("{longest}a"),
        ] {
            assert!(ImageReference::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
