//! The user-space call stack that opened a connection (`[forensics] stacks`): recorded by the
//! kernel programs at `connect()` or `accept()`, symbolized by the agent while the process
//! lives. Also its wire form (the same struct: `/connections`' `stack` field).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A call stack, innermost frame first (the function that called `connect()`/`accept()`'s
/// library wrapper comes after the wrapper itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStack {
    pub frames: Vec<StackFrame>,
}

/// One return address of a call stack and what it resolves to. Each name is null when
/// unknown: a stripped binary gives the address and module only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFrame {
    /// The function (demangled), from the module's ELF symbols or DWARF.
    pub function: Option<String>,
    /// Source file (as the debug information names it), from DWARF.
    pub file: Option<String>,
    /// Source line, from DWARF.
    pub line: Option<u32>,
    /// Path of the mapped file the address lies in (`/proc/PID/maps`).
    pub module: Option<String>,
    /// The return address in the process's address space.
    pub address: u64,
}

impl StackFrame {
    /// `function (file:line)`, `function`, or `0xADDR (module)` when the function is unknown.
    /// The file is shown by its last path component.
    #[must_use]
    pub fn short(&self) -> String {
        match (&self.function, &self.file, self.line) {
            (Some(function), Some(file), Some(line)) => {
                let base = file.rsplit('/').next().unwrap_or(file);
                format!("{function} ({base}:{line})")
            }
            (Some(function), _, _) => function.clone(),
            (None, _, _) => match &self.module {
                Some(module) => format!("{:#x} ({module})", self.address),
                None => format!("{:#x}", self.address),
            },
        }
    }
}

impl CallStack {
    /// The application's frames: frames of the C library (`libc`, `ld-linux`) and of the
    /// kernel's vDSO are left out at the top (the system call's wrapper) and at the bottom (the
    /// C library's start-up code that calls `main`). All frames when every one is such.
    #[must_use]
    pub fn application_frames(&self) -> &[StackFrame] {
        let Some(first) = self.frames.iter().position(|f| !is_system(f)) else {
            return &self.frames;
        };
        let last = self
            .frames
            .iter()
            .rposition(|f| !is_system(f))
            .unwrap_or(first);
        &self.frames[first..=last]
    }
}

/// A frame of the C library, the dynamic loader or the vDSO.
fn is_system(frame: &StackFrame) -> bool {
    frame.module.as_deref().is_some_and(is_system_module)
}

/// Whether the mapped file at `path` (as `/proc/PID/maps` names it) is the C library, the
/// dynamic loader or the vDSO: where system-call wrappers are.
#[must_use]
pub fn is_system_module(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libc.so")
        || name.starts_with("libc-")
        || name.starts_with("ld-linux")
        || name == "[vdso]"
}

/// `open_report_connection (report.c:41) ← handle_request ← main`: the application's frames,
/// innermost first, at most `MAX_SHOWN` of them; the file and line of the first only (where
/// the connection was opened), the callers by name (or address and module when unknown).
impl fmt::Display for CallStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX_SHOWN: usize = 6;
        let frames = self.application_frames();
        for (i, frame) in frames.iter().take(MAX_SHOWN).enumerate() {
            match (i, &frame.function) {
                (0, _) => f.write_str(&frame.short())?,
                (_, Some(function)) => write!(f, " ← {function}")?,
                (_, None) => write!(f, " ← {}", frame.short())?,
            }
        }
        if frames.len() > MAX_SHOWN {
            f.write_str(" ← …")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: Option<&str>, module: &str, line: Option<u32>) -> StackFrame {
        StackFrame {
            function: function.map(str::to_owned),
            file: line.map(|_| "/src/report.c".to_owned()),
            line,
            module: Some(module.to_owned()),
            address: 0x0040_11d6,
        }
    }

    /// The C library's wrapper and start-up code are left out; the first frame shows its file
    /// (by its last component) and line, callers by name; an
    /// unknown function shows its address and module.
    #[test]
    fn the_summary_starts_at_the_application() {
        let stack = CallStack {
            frames: vec![
                frame(
                    Some("__connect"),
                    "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    None,
                ),
                frame(Some("open_report_connection"), "/app/leaky", Some(41)),
                frame(None, "/app/leaky", None),
                frame(Some("main"), "/app/leaky", Some(90)),
                frame(Some("__libc_start_call_main"), "/lib/libc.so.6", None),
            ],
        };
        assert_eq!(
            stack.to_string(),
            "open_report_connection (report.c:41) ← 0x4011d6 (/app/leaky) ← main"
        );
    }

    /// A stack of system frames only is shown whole, not as nothing.
    #[test]
    fn a_stack_of_system_frames_is_shown_whole() {
        let stack = CallStack {
            frames: vec![frame(Some("accept"), "/lib/libc.so.6", None)],
        };
        assert_eq!(stack.to_string(), "accept");
    }
}
