//! A process's mappings (`/proc/PID/maps`): which file each address lies in, and whether it is
//! code. Parsing is pure (tested on text); reading is one file per process.

/// One mapping: `[start, end)`, executable or not, and its path (a file, or `[vdso]`, `[stack]`,
/// …; None for an anonymous mapping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    pub executable: bool,
    pub path: Option<String>,
}

/// The mappings of one process, in address order (as the kernel lists them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Mappings(Vec<Mapping>);

impl Mappings {
    /// Reads `/proc/PID/maps`; empty when the process is gone or unreadable.
    pub(crate) fn of(pid: u32) -> Self {
        std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// The mappings of a `/proc/PID/maps` text; lines that do not parse are skipped.
    pub(crate) fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    /// The mapping `address` lies in.
    pub(crate) fn find(&self, address: u64) -> Option<&Mapping> {
        let at = self.0.partition_point(|m| m.end <= address);
        self.0.get(at).filter(|m| m.start <= address)
    }

    /// Whether `address` lies in executable code.
    pub(crate) fn is_code(&self, address: u64) -> bool {
        self.find(address).is_some_and(|m| m.executable)
    }
}

/// `55d0c1a00000-55d0c1a01000 r-xp 00001000 08:01 1234   /usr/bin/leaky`.
fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.split_ascii_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    // offset, device, inode; the path (which may contain spaces) is the rest.
    let path = line
        .splitn(6, |c: char| c.is_ascii_whitespace())
        .nth(5)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        executable: perms.as_bytes().get(2) == Some(&b'x'),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c1a00000-55d0c1a01000 r--p 00000000 08:01 1234                       /app/leaky
55d0c1a01000-55d0c1a02000 r-xp 00001000 08:01 1234                       /app/leaky
7f00aa000000-7f00aa100000 rw-p 00000000 00:00 0 
7f00ab000000-7f00ab1a0000 r-xp 00028000 08:01 99                         /usr/lib/my lib.so
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";

    /// Addresses find their mapping, code or not; paths keep their spaces; anonymous mappings
    /// have no path; gaps find nothing.
    #[test]
    fn addresses_find_their_mapping() {
        let maps = Mappings::parse(MAPS);
        let leaky = maps.find(0x55d0_c1a0_1234).expect("in the text mapping");
        assert_eq!(leaky.path.as_deref(), Some("/app/leaky"));
        assert!(maps.is_code(0x55d0_c1a0_1234));
        assert!(!maps.is_code(0x55d0_c1a0_0010), "read-only data");
        assert_eq!(maps.find(0x7f00_aa00_0010).unwrap().path, None);
        let lib = maps.find(0x7f00_ab00_0010).unwrap();
        assert_eq!(lib.path.as_deref(), Some("/usr/lib/my lib.so"));
        assert_eq!(
            maps.find(0x7ffd_0000_0001).unwrap().path.as_deref(),
            Some("[vdso]")
        );
        assert_eq!(maps.find(0x1000), None);
        assert_eq!(maps.find(0x55d0_c1a0_2000), None, "end is exclusive");
    }
}
