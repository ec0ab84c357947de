//! A small QMP client: JSON lines over QEMU's monitor socket.
//!
//! QMP is line-delimited JSON. After the greeting the client must send `qmp_capabilities`;
//! then each command gets exactly one `return` or `error` reply, and asynchronous events
//! (`{"event": ...}`) may arrive between them. Events seen while waiting for a reply are kept so
//! that [`Qmp::wait_event`] can find them later. HMP commands go through
//! `human-monitor-command`, whose errors arrive as text in a successful reply.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::error::{Error, Result};

/// How long one QMP command may take before the client gives up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A connected, negotiated QMP session.
#[derive(Debug)]
pub(crate) struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    events: VecDeque<Value>,
    /// QEMU's version string from the greeting (`"7.2.22"`).
    pub(crate) version: String,
}

fn protocol(desc: impl Into<String>) -> Error {
    Error::Qmp {
        class: "Protocol".into(),
        desc: desc.into(),
    }
}

impl Qmp {
    /// Connects to a QMP socket and negotiates capabilities.
    pub(crate) async fn connect(socket: &Path) -> Result<Self> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| Error::io(format!("connecting to QMP socket {}", socket.display()), e))?;
        let (r, w) = stream.into_split();
        let mut qmp = Self {
            reader: BufReader::new(r),
            writer: w,
            events: VecDeque::new(),
            version: String::new(),
        };
        let greeting = qmp.read_message().await?;
        let v = greeting
            .pointer("/QMP/version/qemu")
            .ok_or_else(|| protocol(format!("unexpected greeting {greeting}")))?;
        qmp.version = format!(
            "{}.{}.{}",
            v["major"].as_u64().unwrap_or(0),
            v["minor"].as_u64().unwrap_or(0),
            v["micro"].as_u64().unwrap_or(0)
        );
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Connects, retrying until `deadline` while the socket does not exist or refuses.
    pub(crate) async fn connect_with_retry(socket: &Path, deadline: Duration) -> Result<Self> {
        let start = tokio::time::Instant::now();
        loop {
            match Self::connect(socket).await {
                Ok(q) => return Ok(q),
                Err(e) if start.elapsed() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    async fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = tokio::time::timeout(REPLY_TIMEOUT, self.reader.read_line(&mut line))
            .await
            .map_err(|_| Error::Timeout {
                what: "a QMP reply".into(),
                seconds: REPLY_TIMEOUT.as_secs_f64(),
            })?
            .map_err(|e| Error::io("reading from QMP socket", e))?;
        if n == 0 {
            return Err(protocol("QEMU closed the monitor connection"));
        }
        serde_json::from_str(&line).map_err(|e| protocol(format!("bad JSON {line:?}: {e}")))
    }

    /// Runs a QMP command and returns its `return` value.
    pub(crate) async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .await
            .map_err(|e| Error::io(format!("sending QMP command {command}"), e))?;
        loop {
            let reply = self.read_message().await?;
            if reply.get("event").is_some() {
                self.events.push_back(reply);
                continue;
            }
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(Error::Qmp {
                    class: e["class"].as_str().unwrap_or("Unknown").to_owned(),
                    desc: e["desc"].as_str().unwrap_or("").to_owned(),
                });
            }
            return Err(protocol(format!("unexpected reply {reply}")));
        }
    }

    /// Runs an HMP command; text that reports an error becomes an [`Error::Qmp`].
    pub(crate) async fn hmp(&mut self, command_line: &str) -> Result<String> {
        let out = self
            .execute(
                "human-monitor-command",
                Some(json!({ "command-line": command_line })),
            )
            .await?;
        let text = out.as_str().unwrap_or_default().to_owned();
        if hmp_reports_error(&text) {
            return Err(Error::Qmp {
                class: "HmpError".into(),
                desc: format!("{command_line}: {}", text.trim()),
            });
        }
        Ok(text)
    }

    /// Waits for an event named `name` whose `data` satisfies `matches`.
    pub(crate) async fn wait_event(
        &mut self,
        name: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(pos) = self
            .events
            .iter()
            .position(|e| e["event"] == name && matches(&e["data"]))
        {
            return Ok(self.events.remove(pos).unwrap_or_default());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.read_message())
                .await
                .map_err(|_| Error::Timeout {
                    what: format!("QMP event {name}"),
                    seconds: timeout.as_secs_f64(),
                })??;
            if msg["event"] == name && matches(&msg["data"]) {
                return Ok(msg);
            }
            if msg.get("event").is_some() {
                self.events.push_back(msg);
            }
        }
    }
}

/// Whether HMP output text reports a failure (HMP has no structured errors).
pub(crate) fn hmp_reports_error(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("Error")
        || t.contains("does not support")
        || t.contains("is disabled")
        || t.starts_with("Could not")
        || t.contains("not found")
        || t.starts_with("Invalid")
}

#[cfg(test)]
mod tests {
    use super::hmp_reports_error;

    #[test]
    fn hmp_errors_are_recognised() {
        assert!(hmp_reports_error(
            "Error: Migration is disabled when VirtFS export path '/x' is mounted"
        ));
        assert!(hmp_reports_error("Could not open 'x'"));
        assert!(!hmp_reports_error(""));
        assert!(!hmp_reports_error(
            "List of snapshots present on all disks:\r\n"
        ));
    }
}
