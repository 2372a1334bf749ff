//! The canonical 44-byte WAV header for the recorder's one format (PCM, 2 channels,
//! 8000 Hz, 16-bit little-endian) and the crash repair that rewrites its two size fields.
//!
//! Why sizes can be wrong: the recorder writes the header first with zero sizes (it cannot
//! know the length) and appends audio; only `finish` seeks back to fill them in. A crash
//! in between leaves a file whose audio is all there but whose header says "empty".
//! Because the format is fixed and the data chunk is last, the file length alone gives the
//! right sizes, so [`repair`] needs nothing but the file.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Header length: RIFF (12) + fmt chunk (8 + 16) + data chunk header (8).
pub const HEADER_LEN: u64 = 44;
/// Bytes per stereo frame (2 channels × 16 bits).
pub const FRAME_BYTES: u64 = 4;
/// Sample rate, frames per second.
pub const RATE: u32 = 8000;
/// Largest data size a RIFF file can state (its RIFF size, data + 36, is a u32), rounded
/// down to whole frames: about 37 hours of audio.
pub const MAX_DATA: u32 = (u32::MAX - 36) / FRAME_BYTES as u32 * FRAME_BYTES as u32;

/// The header bytes for `data_bytes` of audio.
pub fn header(data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let channels: u16 = 2;
    let bits: u16 = 16;
    let align = channels * bits / 8;
    let fields: [&[u8]; 12] = [
        b"RIFF",
        &data_bytes.saturating_add(36).to_le_bytes(),
        b"WAVEfmt ",
        &16u32.to_le_bytes(), // fmt chunk size
        &1u16.to_le_bytes(),  // PCM
        &channels.to_le_bytes(),
        &RATE.to_le_bytes(),
        &(RATE * u32::from(align)).to_le_bytes(), // byte rate
        &align.to_le_bytes(),
        &bits.to_le_bytes(),
        b"data",
        &data_bytes.to_le_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        if let Some(dst) = h.get_mut(at..at + f.len()) {
            dst.copy_from_slice(f);
        }
        at += f.len();
    }
    h
}

/// Writes the header for `data_bytes` of audio at the writer's position.
pub fn write_header<W: Write>(w: &mut W, data_bytes: u32) -> io::Result<()> {
    w.write_all(&header(data_bytes))
}

/// What [`repair`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repaired {
    /// Whether the file was changed (header rewritten and/or tail trimmed).
    pub changed: bool,
    /// The data size the header now states.
    pub data_bytes: u32,
    /// Bytes cut from the end: a partial frame left by a crash mid-write, or anything past
    /// [`MAX_DATA`].
    pub trimmed: u64,
}

/// Whether `got` (a prefix of a header, possibly all 44 bytes) is one of ours, ignoring
/// the two size fields (bytes 4..8 and 40..44) that a crash leaves stale.
fn ours(got: &[u8]) -> bool {
    let want = header(0);
    got.iter()
        .zip(want.iter())
        .enumerate()
        .all(|(i, (g, w))| (4..8).contains(&i) || (40..44).contains(&i) || g == w)
}

/// Sets the header's RIFF and data sizes from the file's length, after trimming a trailing
/// partial frame. A no-op (nothing written) when the sizes are already right, so it is
/// safe to run on every recording at start-up. A file shorter than a header whose bytes
/// are a prefix of ours (a crash before the header reached the disk) becomes a valid empty
/// recording. Anything that is not our format is `InvalidData`, left untouched.
pub fn repair(path: &Path) -> io::Result<Repaired> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut head = Vec::with_capacity(HEADER_LEN as usize);
    (&mut f).take(HEADER_LEN).read_to_end(&mut head)?;
    if !ours(&head) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a maskd recording (8 kHz stereo 16-bit PCM WAV)",
        ));
    }
    if len < HEADER_LEN {
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        write_header(&mut f, 0)?;
        f.sync_all()?;
        return Ok(Repaired {
            changed: true,
            data_bytes: 0,
            trimmed: 0,
        });
    }
    let raw = len - HEADER_LEN;
    let data = (raw - raw % FRAME_BYTES).min(u64::from(MAX_DATA));
    let data_bytes = u32::try_from(data).unwrap_or(MAX_DATA);
    let trimmed = raw - data;
    let right = head == header(data_bytes);
    if right && trimmed == 0 {
        return Ok(Repaired {
            changed: false,
            data_bytes,
            trimmed,
        });
    }
    if trimmed > 0 {
        f.set_len(HEADER_LEN + data)?;
    }
    if !right {
        f.seek(SeekFrom::Start(0))?;
        write_header(&mut f, data_bytes)?;
    }
    f.sync_all()?;
    Ok(Repaired {
        changed: true,
        data_bytes,
        trimmed,
    })
}

/// Test helpers: a strict reader for our format and unique temp paths.
#[cfg(test)]
pub mod testing {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A temp file path unique to this process and call; the caller removes it.
    pub fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("maskd-rec-{}-{tag}-{n}.wav", std::process::id()))
    }

    /// Removes the file when dropped, so a failing test still cleans up.
    pub struct TempFile(pub PathBuf);
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// Reads a recording, checking every header field against the file: returns the
    /// (left, right) samples.
    pub fn read(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() >= 44, "short file");
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32_at(4) as usize, bytes.len() - 8, "RIFF size");
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32_at(16), 16);
        assert_eq!(u16_at(20), 1, "PCM");
        assert_eq!(u16_at(22), 2, "channels");
        assert_eq!(u32_at(24), 8000, "rate");
        assert_eq!(u32_at(28), 32000, "byte rate");
        assert_eq!(u16_at(32), 4, "block align");
        assert_eq!(u16_at(34), 16, "bits");
        assert_eq!(&bytes[36..40], b"data");
        assert_eq!(u32_at(40) as usize, bytes.len() - 44, "data size");
        assert_eq!((bytes.len() - 44) % 4, 0, "whole frames");
        let (mut l, mut r) = (Vec::new(), Vec::new());
        for f in bytes[44..].chunks_exact(4) {
            l.push(i16::from_le_bytes([f[0], f[1]]));
            r.push(i16::from_le_bytes([f[2], f[3]]));
        }
        (l, r)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn write_file(path: &Path, header_size: u32, frames: &[[i16; 2]], extra: &[u8]) {
        let mut f = std::fs::File::create(path).unwrap();
        write_header(&mut f, header_size).unwrap();
        for fr in frames {
            f.write_all(&fr[0].to_le_bytes()).unwrap();
            f.write_all(&fr[1].to_le_bytes()).unwrap();
        }
        f.write_all(extra).unwrap();
    }

    #[test]
    fn header_layout() {
        let h = header(400);
        assert_eq!(h.len(), 44);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 436);
        assert_eq!(&h[36..40], b"data");
        assert_eq!(u32::from_le_bytes(h[40..44].try_into().unwrap()), 400);
        assert_eq!(MAX_DATA % 4, 0);
        assert!(u64::from(MAX_DATA) + 36 <= u64::from(u32::MAX));
    }

    #[test]
    fn repair_fixes_placeholder_sizes() {
        let t = TempFile(temp_path("ph"));
        let frames: Vec<[i16; 2]> = (0..1000).map(|i| [i as i16, -(i as i16)]).collect();
        write_file(&t.0, 0, &frames, &[]);
        let r = repair(&t.0).unwrap();
        assert_eq!(
            r,
            Repaired {
                changed: true,
                data_bytes: 4000,
                trimmed: 0
            }
        );
        let (l, rr) = read(&t.0);
        assert_eq!(l.len(), 1000);
        assert_eq!((l[999], rr[999]), (999, -999));
        // Second run: already right, nothing written.
        let before = std::fs::metadata(&t.0).unwrap().modified().unwrap();
        let r2 = repair(&t.0).unwrap();
        assert!(!r2.changed);
        assert_eq!(r2.data_bytes, 4000);
        assert_eq!(std::fs::metadata(&t.0).unwrap().modified().unwrap(), before);
    }

    #[test]
    fn repair_drops_a_partial_frame() {
        let t = TempFile(temp_path("partial"));
        write_file(&t.0, 0, &[[1, 2], [3, 4], [5, 6]], &[7, 0, 8]);
        let r = repair(&t.0).unwrap();
        assert_eq!(
            r,
            Repaired {
                changed: true,
                data_bytes: 12,
                trimmed: 3
            }
        );
        assert_eq!(read(&t.0), (vec![1, 3, 5], vec![2, 4, 6]));
    }

    #[test]
    fn repair_handles_a_correct_header_with_a_torn_tail() {
        // Header right for 2 frames but a partial third frame follows: only the trim.
        let t = TempFile(temp_path("torn"));
        write_file(&t.0, 8, &[[1, 2], [3, 4]], &[9]);
        let r = repair(&t.0).unwrap();
        assert_eq!((r.changed, r.data_bytes, r.trimmed), (true, 8, 1));
        assert_eq!(read(&t.0), (vec![1, 3], vec![2, 4]));
    }

    #[test]
    fn repair_of_a_header_cut_short() {
        let t = TempFile(temp_path("cut"));
        std::fs::write(&t.0, &header(0)[..20]).unwrap();
        assert_eq!(repair(&t.0).unwrap().data_bytes, 0);
        assert_eq!(read(&t.0), (vec![], vec![]));
        std::fs::write(&t.0, b"").unwrap();
        assert!(repair(&t.0).unwrap().changed);
        assert_eq!(read(&t.0).0.len(), 0);
    }

    #[test]
    fn repair_refuses_other_files() {
        let t = TempFile(temp_path("other"));
        std::fs::write(
            &t.0,
            b"this is not a wav file, it is a text file of some length",
        )
        .unwrap();
        let e = repair(&t.0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Untouched.
        assert!(std::fs::read(&t.0).unwrap().starts_with(b"this is not"));
        // A mono WAV is not ours either.
        let mut h = header(0);
        h[22] = 1;
        std::fs::write(&t.0, h).unwrap();
        assert!(repair(&t.0).is_err());
        assert!(repair(&temp_path("missing")).is_err());
    }
}
