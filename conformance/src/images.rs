//! The test images the suite expects to be present in the endpoint's image store (imported
//! beforehand by the harness, so most cases need no registry), and the facts the cases assert
//! about them. Keep these constants equal to what the harness builds.

/// Default references of the preloaded images.
pub const BUSYBOX: &str = "localhost/crius/busybox:1";
pub const USER: &str = "localhost/crius/user:1";
pub const PAUSE: &str = "localhost/crius/pause:1";

/// The image pulled from `--registry` / `--registry-auth`: `<registry>/<PULL_REPO>`. It must
/// not share its image id with a preloaded image (cases remove it by id and digest).
pub const PULL_REPO: &str = "crius/busybox:1";

/// `localhost/crius/user:1`: its config's `User` field as written in the image.
pub const USER_IMAGE_CONFIG_USER: &str = "crius";
/// The uid, primary gid and name `/etc/passwd` gives that user.
pub const USER_IMAGE_UID: i64 = 1234;
pub const USER_IMAGE_GID: i64 = 1234;
pub const USER_IMAGE_USERNAME: &str = "crius";
/// A group in the image's `/etc/group` that lists the user as a member (supplementary).
pub const USER_IMAGE_EXTRA_GID: i64 = 5678;
/// ENTRYPOINT and CMD: the image's default process prints its arguments.
pub const USER_IMAGE_ENTRYPOINT: &[&str] = &["/bin/echo", "entrypoint"];
pub const USER_IMAGE_CMD: &[&str] = &["cmd-default"];
pub const USER_IMAGE_WORKDIR: &str = "/home/crius";
/// One `NAME=value` from the image's ENV.
pub const USER_IMAGE_ENV: (&str, &str) = ("CRIUS_IMAGE", "user");

/// The references a run uses; overridable with `--test-image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestImages {
    pub busybox: String,
    pub user: String,
    pub pause: String,
}

impl Default for TestImages {
    fn default() -> Self {
        TestImages {
            busybox: BUSYBOX.to_owned(),
            user: USER.to_owned(),
            pause: PAUSE.to_owned(),
        }
    }
}

impl TestImages {
    /// Applies one `--test-image` value: `busybox=REF`, `user=REF`, `pause=REF`, or a bare
    /// `REF` whose repository name says which it is (`…pause…`, `…user…`, else busybox).
    pub fn set(&mut self, value: &str) -> anyhow::Result<()> {
        let (kind, reference) = match value.split_once('=') {
            Some((kind, reference)) => (kind.to_owned(), reference),
            None => {
                let repository = value
                    .rsplit('/')
                    .next()
                    .unwrap_or(value)
                    .split([':', '@'])
                    .next()
                    .unwrap_or(value);
                let kind = if repository.contains("pause") {
                    "pause"
                } else if repository.contains("user") {
                    "user"
                } else {
                    "busybox"
                };
                (kind.to_owned(), value)
            }
        };
        let slot = match kind.as_str() {
            "busybox" => &mut self.busybox,
            "user" => &mut self.user,
            "pause" => &mut self.pause,
            other => anyhow::bail!(
                "--test-image {value:?}: unknown kind {other:?} (busybox, user, pause)"
            ),
        };
        *slot = reference.to_owned();
        Ok(())
    }

    /// Whether `reference` names one of the preloaded images (never removed by a case).
    pub fn is_preloaded(&self, reference: &str) -> bool {
        [&self.busybox, &self.user, &self.pause]
            .iter()
            .any(|image| image.as_str() == reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_values_pick_their_slot() -> anyhow::Result<()> {
        let mut images = TestImages::default();
        images.set("registry.local/x/pause:3")?;
        images.set("user=example/u:1")?;
        images.set("example/bb@sha256:00")?;
        assert_eq!(images.pause, "registry.local/x/pause:3");
        assert_eq!(images.user, "example/u:1");
        assert_eq!(images.busybox, "example/bb@sha256:00");
        assert!(images.set("other=x").is_err());
        Ok(())
    }
}
