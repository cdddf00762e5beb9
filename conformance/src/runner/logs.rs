//! The CRI container log format: every line is `<RFC3339Nano> <stdout|stderr> <P|F> <text>`,
//! where `P` marks a partial line that continues in the next record of the same stream.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub time: DateTime<FixedOffset>,
    pub stream: Stream,
    pub partial: bool,
    pub text: String,
}

/// Parses one record strictly; the error quotes the offending line.
pub fn parse_record(line: &str) -> Result<LogRecord> {
    let mut fields = line.splitn(4, ' ');
    let (Some(time), Some(stream), Some(tag), Some(text)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        bail!("log line {line:?} does not have the form `<time> <stream> <P|F> <text>`");
    };
    let time = DateTime::parse_from_rfc3339(time)
        .with_context(|| format!("log line {line:?}: {time:?} is not an RFC 3339 timestamp"))?;
    let stream = match stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => bail!("log line {line:?}: stream {other:?} is neither stdout nor stderr"),
    };
    let partial = match tag {
        "P" => true,
        "F" => false,
        other => bail!("log line {line:?}: tag {other:?} is neither P nor F"),
    };
    Ok(LogRecord {
        time,
        stream,
        partial,
        text: text.to_owned(),
    })
}

/// Parses a whole log file; every line must be a record and the file must end with `\n`.
pub fn parse_log(content: &str) -> Result<Vec<LogRecord>> {
    if content.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = content.strip_suffix('\n') else {
        bail!(
            "log file does not end with a newline: {:?}",
            tail(content, 200)
        );
    };
    body.split('\n').map(parse_record).collect()
}

/// Joins partial records into the lines the container wrote, per stream, in file order.
pub fn lines(records: &[LogRecord]) -> Vec<(Stream, String)> {
    let mut out = Vec::new();
    let mut pending_out = String::new();
    let mut pending_err = String::new();
    for record in records {
        let pending = match record.stream {
            Stream::Stdout => &mut pending_out,
            Stream::Stderr => &mut pending_err,
        };
        pending.push_str(&record.text);
        if !record.partial {
            out.push((record.stream, std::mem::take(pending)));
        }
    }
    out
}

/// The complete lines written to one stream.
pub fn stream_lines(records: &[LogRecord], stream: Stream) -> Vec<String> {
    lines(records)
        .into_iter()
        .filter(|(s, _)| *s == stream)
        .map(|(_, text)| text)
        .collect()
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_partial_records() -> Result<()> {
        let log = "2024-05-01T10:00:00.123456789Z stdout P hel\n\
                   2024-05-01T10:00:00.2Z stderr F oops\n\
                   2024-05-01T10:00:00.3+02:00 stdout F lo\n\
                   2024-05-01T10:00:00.4Z stdout F \n";
        let records = parse_log(log)?;
        assert_eq!(records.len(), 4);
        assert!(records[0].partial);
        assert_eq!(
            lines(&records),
            vec![
                (Stream::Stderr, "oops".to_owned()),
                (Stream::Stdout, "hello".to_owned()),
                (Stream::Stdout, String::new()),
            ]
        );
        Ok(())
    }

    #[test]
    fn rejects_malformed_records() {
        for bad in [
            "2024-05-01T10:00:00Z stdout X hi\n",
            "2024-05-01 10:00:00 stdout F hi\n",
            "2024-05-01T10:00:00Z console F hi\n",
            "2024-05-01T10:00:00Z stdout F hi",
            "2024-05-01T10:00:00Z stdout F\n",
            "hello\n",
        ] {
            assert!(parse_log(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
