//! A minimal QMP client: enough to send one command to a running qemu and
//! read its answer.

use crate::plan::names;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

/// Sends `command` with `arguments` over the VM's QMP socket and returns the
/// `return` value, or the error qemu gave.
pub fn execute(vm_dir: &Path, command: &str, arguments: Value) -> Result<Value, String> {
    let stream = crate::sock::connect(vm_dir, names::QMP).map_err(|e| format!("QMP: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let read_reply = |reader: &mut BufReader<_>| -> Result<Value, String> {
        loop {
            let mut line = String::new();
            if reader
                .read_line(&mut line)
                .map_err(|e| format!("QMP: {e}"))?
                == 0
            {
                return Err("QMP: qemu closed the connection".into());
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("QMP: {e}"))?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP: {}", e["desc"].as_str().unwrap_or("error")));
            }
            // Greeting and asynchronous events: keep reading.
        }
    };
    let mut send = |v: Value| -> Result<(), String> {
        writeln!(writer, "{v}").map_err(|e| format!("QMP: {e}"))
    };
    send(json!({"execute": "qmp_capabilities"}))?;
    read_reply(&mut reader)?;
    send(json!({"execute": command, "arguments": arguments}))?;
    read_reply(&mut reader)
}

/// Runs a human-monitor command through QMP and returns its output.
pub fn hmp(vm_dir: &Path, command_line: &str) -> Result<String, String> {
    let v = execute(
        vm_dir,
        "human-monitor-command",
        json!({"command-line": command_line}),
    )?;
    Ok(v.as_str().unwrap_or_default().to_string())
}
