//! Reclaim's kernel side where there is no Linux kernel (Windows): the names `disk::linux`
//! provides, each refusing with "not supported on Windows yet" or seeing nothing, so `reclaim`
//! compiles everywhere and refuses cleanly. Windows' counterpart (extending the system volume
//! into free space) is a different feature, not done yet. Never touches a disk.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// The refusal every action gives.
fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "not supported on Windows yet: reclaim (partition and filesystem growth)",
    )
}

/// A mounted filesystem (same shape as on Linux; never produced here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub major: u32,
    pub minor: u32,
    pub mountpoint: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// A kernel partition (same shape as on Linux; never produced here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysPart {
    pub name: String,
    pub disk: String,
    pub number: u32,
    pub start: u64,
    pub size: u64,
}

pub fn mounts() -> Vec<Mount> {
    Vec::new()
}

pub fn mount_dev(_m: &Mount) -> Option<(u32, u32)> {
    None
}

pub fn sys_part(_major: u32, _minor: u32) -> Option<SysPart> {
    None
}

pub fn sys_children(_disk: &str) -> Vec<SysPart> {
    Vec::new()
}

pub fn in_use(_part: &SysPart, _mounts: &[Mount]) -> Option<String> {
    None
}

pub fn sys_name(_dev: &File) -> Option<String> {
    None
}

pub fn size_bytes(_dev: &File) -> io::Result<u64> {
    Err(unsupported())
}

pub fn sector_size(_dev: &File) -> io::Result<u64> {
    Err(unsupported())
}

pub fn lock(_dev: &File, _wait: Duration) -> io::Result<()> {
    Err(unsupported())
}

pub fn write_at(_dev: &File, _offset: u64, _bytes: &[u8]) -> io::Result<()> {
    Err(unsupported())
}

pub fn read_exact_at(_dev: &File, _buf: &mut [u8], _offset: u64) -> io::Result<()> {
    Err(unsupported())
}

pub fn del_partition(_dev: &File, _pno: u32) -> io::Result<()> {
    Err(unsupported())
}

pub fn resize_partition(_dev: &File, _pno: u32, _start: u64, _length: u64) -> io::Result<()> {
    Err(unsupported())
}

pub fn zero_range(
    _dev: &File,
    _is_device: bool,
    _start: u64,
    _len: u64,
    _progress: &mut dyn FnMut(u64, u64),
) -> io::Result<()> {
    Err(unsupported())
}

/// No errno here: a value no OS error has.
pub const EBUSY: i32 = -1;

pub fn is_block_device(_m: &std::fs::Metadata) -> bool {
    false
}
