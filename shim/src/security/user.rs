//! Which uid, gid and supplementary groups a container process runs with, resolved against
//! the image's own /etc/passwd and /etc/group.

use super::SpecError;
use crate::domain::SupplementalGroupsPolicy;

/// What the CRI security context and the image ask for.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserRequest<'a> {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: &'a str,
    /// The image config's `USER`: `name`, `uid`, `name:group` or `uid:gid`.
    pub image_user: &'a str,
    pub supplemental_groups: &'a [i64],
    pub policy: SupplementalGroupsPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates; holds the primary gid too, so a process that drops to
    /// another gid cannot shed the primary group's restrictions (containerd 1.6.18's fix
    /// for the same problem).
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

/// Entries of an /etc/passwd text; malformed lines are skipped, as libc does.
fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let uid = fields.next()?.trim().parse().ok()?;
            let gid = fields.next()?.trim().parse().ok()?;
            (!name.is_empty()).then_some(PasswdEntry { name, uid, gid })
        })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let _password = fields.next()?;
            let gid = fields.next()?.trim().parse().ok()?;
            let members = fields
                .next()
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            (!name.is_empty()).then_some(GroupEntry { name, gid, members })
        })
}

fn id_from_i64(value: i64, what: &str) -> Result<u32, SpecError> {
    u32::try_from(value)
        .map_err(|_| SpecError::InvalidArgument(format!("{what} {value} is out of range")))
}

/// Resolve the process user.
///
/// Precedence follows containerd: `run_as_username`, then `run_as_user`, then the image's
/// `USER`, then root. `run_as_group` replaces the group part of the chosen user; the CRI
/// sends it only with `run_as_user` or `run_as_username` (`services/convert.rs` refuses it
/// alone, as api.proto demands). A name that the image does not define fails the create,
/// naming it.
pub fn resolve_user(
    request: &UserRequest<'_>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ResolvedUser, SpecError> {
    let requested_group = request
        .run_as_group
        .map(|g| id_from_i64(g, "run_as_group"))
        .transpose()?;
    let (user_part, group_part): (String, Option<String>) = if !request.run_as_username.is_empty() {
        (request.run_as_username.to_string(), None)
    } else if let Some(uid) = request.run_as_user {
        (id_from_i64(uid, "run_as_user")?.to_string(), None)
    } else if !request.image_user.trim().is_empty() {
        match request.image_user.trim().split_once(':') {
            Some((user, group)) => (
                user.to_string(),
                Some(group.to_string()).filter(|g| !g.is_empty()),
            ),
            None => (request.image_user.trim().to_string(), None),
        }
    } else {
        ("0".to_string(), None)
    };

    let passwd_text = passwd.unwrap_or("");
    let group_text = group.unwrap_or("");
    let (uid, passwd_gid, username) = match user_part.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd_entries(passwd_text).find(|e| e.uid == uid);
            (
                uid,
                entry.as_ref().map_or(0, |e| e.gid),
                entry.map(|e| e.name.to_string()),
            )
        }
        Err(_) => {
            let entry = passwd_entries(passwd_text)
                .find(|e| e.name == user_part)
                .ok_or_else(|| {
                    SpecError::InvalidArgument(match passwd {
                        Some(_) => format!("user {user_part:?} is not in the image's /etc/passwd"),
                        None => format!(
                            "user {user_part:?} cannot be resolved: the image has no /etc/passwd"
                        ),
                    })
                })?;
            (entry.uid, entry.gid, Some(user_part.clone()))
        }
    };

    let gid = match (requested_group, group_part) {
        (Some(gid), _) => gid,
        (None, Some(name_or_gid)) => match name_or_gid.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group_text)
                .find(|e| e.name == name_or_gid)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    SpecError::InvalidArgument(format!(
                        "group {name_or_gid:?} is not in the image's /etc/group"
                    ))
                })?,
        },
        (None, None) => passwd_gid,
    };

    let mut additional = vec![gid];
    if request.policy == SupplementalGroupsPolicy::Merge {
        if let Some(name) = &username {
            additional.extend(
                group_entries(group_text)
                    .filter(|e| e.members.contains(&name.as_str()))
                    .map(|e| e.gid),
            );
        }
    }
    for g in request.supplemental_groups {
        additional.push(id_from_i64(*g, "supplemental group")?);
    }
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken line\ndaemon:x:1:1::/:/sbin/nologin\nwww-data:x:33:33:www:/var/www:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,alice\nwww-data:x:33:\nvideo:x:44:alice\nalice:x:1000:\nstaff:x:50:bob\n";

    fn request<'a>() -> UserRequest<'a> {
        UserRequest::default()
    }

    fn resolve(request: UserRequest<'_>) -> Result<ResolvedUser, SpecError> {
        resolve_user(&request, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn user_resolution_table() {
        let cases: Vec<(UserRequest, (u32, u32))> = vec![
            (request(), (0, 0)),
            (
                UserRequest {
                    image_user: "www-data",
                    ..request()
                },
                (33, 33),
            ),
            (
                UserRequest {
                    image_user: "1000",
                    ..request()
                },
                (1000, 1000),
            ),
            (
                UserRequest {
                    image_user: "4242",
                    ..request()
                },
                (4242, 0),
            ),
            (
                UserRequest {
                    image_user: "alice:video",
                    ..request()
                },
                (1000, 44),
            ),
            (
                UserRequest {
                    image_user: "33:50",
                    ..request()
                },
                (33, 50),
            ),
            (
                UserRequest {
                    image_user: "www-data",
                    run_as_user: Some(1000),
                    ..request()
                },
                (1000, 1000),
            ),
            (
                UserRequest {
                    run_as_user: Some(1000),
                    run_as_group: Some(3000),
                    ..request()
                },
                (1000, 3000),
            ),
            (
                UserRequest {
                    run_as_username: "daemon",
                    run_as_user: Some(1000),
                    ..request()
                },
                (1, 1),
            ),
            (
                UserRequest {
                    run_as_username: "alice",
                    run_as_group: Some(7),
                    ..request()
                },
                (1000, 7),
            ),
        ];
        for (req, (uid, gid)) in cases {
            let resolved = resolve(req).unwrap_or_else(|e| panic!("{req:?}: {e}"));
            assert_eq!((resolved.uid, resolved.gid), (uid, gid), "{req:?}");
        }
    }

    #[test]
    fn unknown_user_or_group_names_fail_naming_them() {
        let err = resolve(UserRequest {
            run_as_username: "mallory",
            ..request()
        })
        .unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("\"mallory\"")),
            "{err}"
        );
        let err = resolve(UserRequest {
            image_user: "alice:nogroup",
            ..request()
        })
        .unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("\"nogroup\"")),
            "{err}"
        );
        let err = resolve_user(
            &UserRequest {
                image_user: "alice",
                ..request()
            },
            None,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&err, SpecError::InvalidArgument(m) if m.contains("no /etc/passwd")),
            "{err}"
        );
    }

    #[test]
    fn a_requested_group_replaces_the_image_group_and_ids_must_fit() {
        let resolved = resolve(UserRequest {
            run_as_user: Some(1000),
            run_as_group: Some(5),
            image_user: "www-data:video",
            ..request()
        })
        .unwrap();
        assert_eq!((resolved.uid, resolved.gid), (1000, 5));
        assert!(matches!(
            resolve(UserRequest {
                run_as_user: Some(-1),
                ..request()
            }),
            Err(SpecError::InvalidArgument(_))
        ));
        assert!(matches!(
            resolve(UserRequest {
                run_as_user: Some(0),
                run_as_group: Some(1 << 40),
                ..request()
            }),
            Err(SpecError::InvalidArgument(_))
        ));
    }

    #[test]
    fn merge_policy_adds_image_group_membership_and_supplemental_groups() {
        let resolved = resolve(UserRequest {
            run_as_user: Some(1000),
            supplemental_groups: &[2000, 10],
            ..request()
        })
        .unwrap();
        assert_eq!(resolved.additional_gids, vec![10, 44, 1000, 2000]);
        let root = resolve(request()).unwrap();
        assert_eq!(root.additional_gids, vec![0, 10]);
    }

    #[test]
    fn strict_policy_keeps_only_primary_and_requested_groups() {
        let resolved = resolve(UserRequest {
            run_as_user: Some(1000),
            supplemental_groups: &[2000],
            policy: SupplementalGroupsPolicy::Strict,
            ..request()
        })
        .unwrap();
        assert_eq!(resolved.additional_gids, vec![1000, 2000]);
    }
}
