//! A recorded stack → [`CallStack`]: the return addresses (with the caller the kernel's
//! frame-pointer walk skipped, when the stack words show it), symbolized with `blazesym` in the
//! live process (its mappings, ELF symbols and DWARF lines), each frame with its module.

use blazesym::{
    Pid,
    symbolize::{
        Input, Symbolized, Symbolizer,
        source::{Process, Source},
    },
};

use super::proc_maps::Mappings;
use crate::model::{CallStack, StackFrame, is_system_module};

/// The stack's addresses, innermost first, with the return address into the caller of a
/// system-call wrapper put back when the walk skipped it.
///
/// The kernel walks user stacks by frame pointers: from the instruction pointer (inside the C
/// library's `connect`/`accept4`, built without them) it goes straight to the frame the
/// wrapper's caller set up, so the caller's own return address, the one naming the function
/// that called `connect()`, is never read. It lies in the wrapper's few words of stack: the
/// first of `near_sp` that points into code is taken (stack scanning, as crash reporters do
/// without unwind tables), unless the walk already has it.
#[must_use]
pub(crate) fn with_skipped_caller(addresses: &[u64], near_sp: &[u64], maps: &Mappings) -> Vec<u64> {
    let mut out = addresses.to_vec();
    let in_wrapper = addresses
        .first()
        .and_then(|&ip| maps.find(ip))
        .and_then(|m| m.path.as_deref())
        .is_some_and(is_system_module);
    if !in_wrapper {
        return out;
    }
    let caller = near_sp.iter().copied().find(|&w| maps.is_code(w));
    if let Some(caller) = caller
        && addresses.get(1) != Some(&caller)
    {
        out.insert(1, caller);
    }
    out
}

/// The frames of `addresses` (innermost first) in process `pid`, which must still run: names
/// from its mapped files, modules from `maps`. Addresses after the first are return
/// addresses, looked up one byte back so that a call at a function's end names that function
/// (and its line). Frames nothing resolves keep their address and module.
///
/// One address at a time: a module `blazesym` fails to read (measured: the C library of
/// Debian 12, "failed to read ELF section") fails the whole call, and would leave the
/// application's frames unnamed with it. The files are parsed once per symbolizer.
#[must_use]
pub(crate) fn symbolize(pid: u32, addresses: &[u64], maps: &Mappings) -> CallStack {
    let symbolizer = Symbolizer::new();
    let source = Source::Process(Process::new(Pid::from(pid)));
    let frames = addresses
        .iter()
        .enumerate()
        .map(|(i, &address)| {
            let lookup = if i == 0 {
                address
            } else {
                address.saturating_sub(1)
            };
            let symbols = symbolizer
                .symbolize(&source, Input::AbsAddr(&[lookup][..]))
                .inspect_err(|error| tracing::debug!(pid, %error, "symbolizing a frame"))
                .unwrap_or_default();
            let sym = symbols.first().and_then(Symbolized::as_sym);
            let code = sym.and_then(|s| s.code_info.as_deref());
            StackFrame {
                function: sym.map(|s| s.name.to_string()),
                file: code.map(|c| c.to_path().display().to_string()),
                line: code.and_then(|c| c.line),
                module: maps.find(address).and_then(|m| m.path.clone()),
                address,
            }
        })
        .collect();
    CallStack { frames }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c1a01000-55d0c1a02000 r-xp 00001000 08:01 1234   /app/leaky
7f00ab000000-7f00ab1a0000 r-xp 00028000 08:01 99     /usr/lib/x86_64-linux-gnu/libc.so.6
";
    const WRAPPER: u64 = 0x7f00_ab00_0100;
    const CALLER: u64 = 0x55d0_c1a0_1200;
    const GRANDCALLER: u64 = 0x55d0_c1a0_1300;

    /// Inside the C library's wrapper, the first code address among the stack words is the
    /// skipped caller; data words before it are passed over.
    #[test]
    fn the_wrappers_caller_is_put_back() {
        let maps = Mappings::parse(MAPS);
        let words = [0x7ffd_0000_1000, 3, CALLER, GRANDCALLER];
        assert_eq!(
            with_skipped_caller(&[WRAPPER, GRANDCALLER], &words, &maps),
            [WRAPPER, CALLER, GRANDCALLER]
        );
    }

    /// Nothing is added when the walk has the caller already, or when the stack does not
    /// start in a wrapper (the application made the system call with frame pointers).
    #[test]
    fn a_complete_walk_is_left_alone() {
        let maps = Mappings::parse(MAPS);
        let walk = [WRAPPER, CALLER, GRANDCALLER];
        assert_eq!(with_skipped_caller(&walk, &[CALLER], &maps), walk);
        let own = [CALLER, GRANDCALLER];
        assert_eq!(with_skipped_caller(&own, &[CALLER], &maps), own);
        assert_eq!(with_skipped_caller(&[WRAPPER], &[0, 1], &maps), [WRAPPER]);
    }
}
