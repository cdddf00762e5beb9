//! What a remote-command session writes on its error stream when it ends.
//!
//! From `v4.channel.k8s.io` on, the stream carries one JSON `metav1.Status`: `Success`, or
//! `Failure` with reason `NonZeroExitCode` and the exit code as the `ExitCode` cause (kubectl
//! turns it into its own exit code). Older protocols carry a plain error text, nothing on
//! success.

use serde_json::json;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The process exited with this code (attach: the container's output ended, code 0).
    Exited(i32),
    /// The session could not run or broke off.
    Failed(String),
}

/// The error-stream payload for `version` (4 or more: JSON status), or `None` for nothing.
pub fn error_stream_payload(version: u8, ended: &Ended) -> Option<Vec<u8>> {
    if version >= 4 {
        let status = match ended {
            Ended::Exited(0) => json!({"metadata": {}, "status": "Success"}),
            Ended::Exited(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("command terminated with non-zero exit code: exit status {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Ended::Failed(message) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {message}"),
                "reason": "InternalError",
                "code": 500,
                "details": {"causes": [{"message": message}]},
            }),
        };
        return Some(status.to_string().into_bytes());
    }
    match ended {
        Ended::Exited(0) => None,
        Ended::Exited(code) => Some(
            format!("command terminated with non-zero exit code: exit status {code}").into_bytes(),
        ),
        Ended::Failed(message) => Some(message.clone().into_bytes()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(version: u8, ended: Ended) -> serde_json::Value {
        serde_json::from_slice(&error_stream_payload(version, &ended).unwrap()).unwrap()
    }

    #[test]
    fn v4_reports_success_and_exit_codes_as_statuses() {
        assert_eq!(parsed(4, Ended::Exited(0))["status"], "Success");
        let failure = parsed(5, Ended::Exited(3));
        assert_eq!(failure["status"], "Failure");
        assert_eq!(failure["reason"], "NonZeroExitCode");
        assert_eq!(failure["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failure["details"]["causes"][0]["message"], "3");
        let broken = parsed(4, Ended::Failed("no such container".into()));
        assert_eq!(broken["reason"], "InternalError");
        assert!(broken["message"]
            .as_str()
            .unwrap()
            .contains("no such container"));
    }

    #[test]
    fn older_protocols_carry_text_and_nothing_on_success() {
        assert_eq!(error_stream_payload(2, &Ended::Exited(0)), None);
        let text = String::from_utf8(error_stream_payload(1, &Ended::Exited(7)).unwrap()).unwrap();
        assert!(text.contains("exit status 7"), "{text}");
    }
}
