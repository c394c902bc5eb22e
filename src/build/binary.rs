//! What a `flow` binary needs from the image it is copied into: it must be a Linux ELF
//! executable, and when it is linked against glibc, the newest glibc symbol version it asks for
//! must be one Debian 12's glibc (2.36, the image's base) provides.

use std::path::{Path, PathBuf};

/// The glibc of the image's base, Debian 12 (bookworm).
pub const BASE_GLIBC: (u32, u32) = (2, 36);

/// What a binary is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryInfo {
    /// The Docker platform of its architecture (`linux/amd64`, `linux/arm64`, ...).
    pub platform: String,
    /// The newest `GLIBC_x.y` symbol version it needs (`None`: static, or not linked to glibc).
    pub glibc: Option<(u32, u32)>,
}

/// Why a binary cannot go into the image.
#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("cannot read the binary {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a Linux executable ({what}): the image needs a Linux build of flow; pass --binary PATH (one built on Linux) or --source DIR (build flow inside `docker build`)"
    )]
    NotLinux { path: PathBuf, what: String },
    #[error(
        "{path} needs glibc {}.{} but the image's base (Debian 12) has glibc {}.{}: it would not start in the container. Pass --binary PATH with a flow built on Debian 12 or older (or a static build), or --source DIR to build flow inside `docker build`",
        needs.0, needs.1, BASE_GLIBC.0, BASE_GLIBC.1
    )]
    GlibcTooNew { path: PathBuf, needs: (u32, u32) },
}

/// Read `path` and check that the image can run it.
pub fn check(path: &Path) -> Result<BinaryInfo, BinaryError> {
    let bytes = std::fs::read(path).map_err(|source| BinaryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let info = inspect(&bytes).map_err(|what| BinaryError::NotLinux {
        path: path.to_path_buf(),
        what,
    })?;
    if let Some(needs) = info.glibc
        && needs > BASE_GLIBC
    {
        return Err(BinaryError::GlibcTooNew {
            path: path.to_path_buf(),
            needs,
        });
    }
    Ok(info)
}

/// The platform and glibc need of an executable's bytes, or what it is instead.
pub fn inspect(bytes: &[u8]) -> Result<BinaryInfo, String> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        let what = if bytes.len() >= 4
            && matches!(
                u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                0xfeed_face | 0xfeed_facf | 0xcafe_babe
            ) {
            "a macOS Mach-O file"
        } else if bytes.starts_with(b"MZ") {
            "a Windows PE file"
        } else if bytes.starts_with(b"#!") {
            "a script"
        } else {
            "not an ELF file"
        };
        return Err(what.to_string());
    }
    let little = bytes[5] == 1;
    let u16_at = |at: usize| {
        let b = [bytes[at], bytes[at + 1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    // e_ident[EI_OSABI]: 0 (System V) or 3 (GNU/Linux); FreeBSD is 9.
    let os_abi = bytes[7];
    if !matches!(os_abi, 0 | 3) {
        return Err(format!("an ELF file for OS ABI {os_abi}, not Linux"));
    }
    // e_type: 2 executable, 3 shared object (a position-independent executable).
    let e_type = u16_at(16);
    if !matches!(e_type, 2 | 3) {
        return Err(format!("an ELF file of type {e_type}, not an executable"));
    }
    let platform = match u16_at(18) {
        0x3e => "linux/amd64",
        0xb7 => "linux/arm64",
        0x03 => "linux/386",
        0x28 => "linux/arm",
        0xf3 => "linux/riscv64",
        0x15 => "linux/ppc64le",
        0x16 => "linux/s390x",
        other => return Err(format!("an ELF file for machine {other:#x}")),
    };
    Ok(BinaryInfo {
        platform: platform.to_string(),
        glibc: newest_glibc(bytes),
    })
}

/// The newest `GLIBC_x.y[.z]` version named in the binary (its version needs live in
/// `.dynstr`; `GLIBC_PRIVATE` and the like are not versions).
fn newest_glibc(bytes: &[u8]) -> Option<(u32, u32)> {
    const TAG: &[u8] = b"GLIBC_";
    let mut newest: Option<(u32, u32)> = None;
    let mut i = 0;
    while let Some(at) = find(&bytes[i..], TAG) {
        let start = i + at + TAG.len();
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
            end += 1;
        }
        // A version ends the string (NUL).
        if bytes.get(end) == Some(&0)
            && let Ok(text) = std::str::from_utf8(&bytes[start..end])
        {
            let mut parts = text.split('.').map(str::parse::<u32>);
            if let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) {
                newest = newest.max(Some((major, minor)));
            }
        }
        i = start;
    }
    newest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(machine: u16, tail: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn the_newest_glibc_version_is_found() {
        let b = elf(
            0x3e,
            b"\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_PRIVATE\0GLIBC_2.4\0libc.so.6\0",
        );
        let info = inspect(&b).unwrap();
        assert_eq!(info.platform, "linux/amd64");
        assert_eq!(info.glibc, Some((2, 34)));
        let b = elf(0xb7, b"\0GLIBC_2.39\0");
        assert_eq!(inspect(&b).unwrap().glibc, Some((2, 39)));
        assert_eq!(inspect(&elf(0xb7, b"static")).unwrap().glibc, None);
    }

    #[test]
    fn other_files_are_named() {
        assert_eq!(
            inspect(&[0xcf, 0xfa, 0xed, 0xfe, 0, 0]).unwrap_err(),
            "a macOS Mach-O file"
        );
        assert_eq!(inspect(b"#!/bin/sh\necho\n").unwrap_err(), "a script");
        assert_eq!(inspect(b"MZ\x90\0").unwrap_err(), "a Windows PE file");
    }

    #[test]
    fn the_running_test_binary_is_checked() {
        // This test binary is built like flow itself, on the machine running the tests.
        let exe = std::env::current_exe().unwrap();
        let info = inspect(&std::fs::read(exe).unwrap());
        if cfg!(target_os = "linux") {
            assert!(info.unwrap().platform.starts_with("linux/"));
        } else {
            assert!(info.is_err());
        }
    }
}
